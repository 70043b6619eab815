//! Top-1 accuracy of class logits against the classes that were asked for: on generated samples,
//! whether a class-conditional generator drew the class it was given (judged by a classifier); on
//! real images, the classifier's own accuracy, the reference for the former.

/// Fraction of rows of `logits` (n x k, row-major) whose largest entry (the first, on ties) is at
/// the row's label. `labels` has one entry per row; an empty input gives NaN (no evidence).
pub fn top1_accuracy(logits: &[f64], k: usize, labels: &[i64]) -> f64 {
    if k == 0 || labels.is_empty() {
        return f64::NAN;
    }
    let hits = logits
        .chunks_exact(k)
        .zip(labels)
        .filter(|&(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0;
            best as i64 == label
        })
        .count();
    hits as f64 / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::top1_accuracy;

    #[test]
    fn counts_rows_whose_argmax_is_the_label() {
        // Rows: argmax 2, argmax 0, argmax 1 (tie between 1 and 2 goes to the first).
        let logits = [0.1, 0.2, 0.9, 5.0, -1.0, 0.0, 0.0, 3.0, 3.0];
        assert_eq!(top1_accuracy(&logits, 3, &[2, 0, 1]), 1.0);
        assert_eq!(top1_accuracy(&logits, 3, &[2, 1, 2]), 1.0 / 3.0);
        assert_eq!(top1_accuracy(&logits, 3, &[0, 1, 2]), 0.0);
        // Negative logits only: the largest is still the argmax.
        assert_eq!(top1_accuracy(&[-3.0, -1.0, -2.0], 3, &[1]), 1.0);
        assert!(top1_accuracy(&[], 3, &[]).is_nan());
    }
}
