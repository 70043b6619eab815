//! In-memory image datasets and seeded batching.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Grey-scale images with integer labels, held in memory as u8.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pub name: String,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl ImageDataset {
    /// Builds a dataset; `pixels.len()` must be `labels.len() * height * width`.
    pub fn new(
        name: impl Into<String>,
        height: usize,
        width: usize,
        classes: usize,
        pixels: Vec<u8>,
        labels: Vec<u8>,
    ) -> Result<ImageDataset, String> {
        if pixels.len() != labels.len() * height * width {
            return Err(format!(
                "{} pixels for {} labels of {height}x{width} images",
                pixels.len(),
                labels.len()
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(format!("label {bad} out of range 0..{classes}"));
        }
        Ok(ImageDataset {
            name: name.into(),
            height,
            width,
            classes,
            pixels,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Mean pixel value in [0, 1].
    pub fn mean_intensity(&self) -> f64 {
        if self.pixels.is_empty() {
            return 0.0;
        }
        self.pixels.iter().map(|&p| p as f64).sum::<f64>() / (255.0 * self.pixels.len() as f64)
    }

    /// The images at `indices`, scaled to [0, 1], flattened row-major into one buffer, with labels.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<i64>) {
        let d = self.dim();
        let mut x = Vec::with_capacity(indices.len() * d);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend(self.image(i).iter().map(|&p| p as f32 / 255.0));
            y.push(self.labels[i] as i64);
        }
        (x, y)
    }

    /// The first `n` images (or all of them).
    pub fn take(&self, n: usize) -> ImageDataset {
        let n = n.min(self.len());
        ImageDataset {
            name: self.name.clone(),
            height: self.height,
            width: self.width,
            classes: self.classes,
            pixels: self.pixels[..n * self.dim()].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// The images at `indices`, as a new dataset.
    pub fn select(&self, indices: &[usize]) -> ImageDataset {
        let mut pixels = Vec::with_capacity(indices.len() * self.dim());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageDataset {
            name: self.name.clone(),
            height: self.height,
            width: self.width,
            classes: self.classes,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Endless batches of indices: each epoch is a fresh permutation drawn from `seed`; the last,
    /// incomplete batch of an epoch is dropped so that every batch has `batch_size` items.
    pub fn batches(&self, batch_size: usize, seed: u64) -> BatchIter {
        BatchIter::new(self.len(), batch_size, seed)
    }
}

/// Seeded, epoch-wise shuffled batches of indices.
#[derive(Debug, Clone)]
pub struct BatchIter {
    n: usize,
    batch_size: usize,
    order: Vec<usize>,
    pos: usize,
    epoch: usize,
    rng: rand::rngs::StdRng,
}

impl BatchIter {
    pub fn new(n: usize, batch_size: usize, seed: u64) -> BatchIter {
        let batch_size = batch_size.clamp(1, n.max(1));
        let mut it = BatchIter {
            n,
            batch_size,
            order: (0..n).collect(),
            pos: 0,
            epoch: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        };
        it.order.shuffle(&mut it.rng);
        it
    }

    /// Completed passes over the data.
    pub fn epoch(&self) -> usize {
        self.epoch
    }
}

impl Iterator for BatchIter {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.n == 0 {
            return None;
        }
        if self.pos + self.batch_size > self.n {
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
            self.epoch += 1;
        }
        let batch = self.order[self.pos..self.pos + self.batch_size].to_vec();
        self.pos += self.batch_size;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageDataset {
        let labels: Vec<u8> = (0..10).map(|i| (i % 3) as u8).collect();
        let pixels: Vec<u8> = (0..10 * 4).map(|i| (i * 6) as u8).collect();
        ImageDataset::new("tiny", 2, 2, 3, pixels, labels).unwrap()
    }

    #[test]
    fn batches_cover_each_epoch_once_and_are_reproducible() {
        let d = tiny();
        let a: Vec<Vec<usize>> = d.batches(5, 7).take(4).collect();
        let b: Vec<Vec<usize>> = d.batches(5, 7).take(4).collect();
        assert_eq!(a, b);
        let mut first_epoch: Vec<usize> = a[0].iter().chain(&a[1]).copied().collect();
        first_epoch.sort();
        assert_eq!(first_epoch, (0..10).collect::<Vec<_>>());
        let c: Vec<Vec<usize>> = d.batches(5, 8).take(2).collect();
        assert_ne!(a[..2], c[..]);
    }

    #[test]
    fn gather_scales_to_unit_interval() {
        let d = tiny();
        let (x, y) = d.gather(&[1, 9]);
        assert_eq!(y, vec![1, 0]);
        assert_eq!(x.len(), 8);
        assert!((x[0] - 24.0 / 255.0).abs() < 1e-7);
        assert_eq!(d.class_counts(), vec![4, 3, 3]);
        assert!(ImageDataset::new("bad", 2, 2, 3, vec![0; 3], vec![0]).is_err());
        assert!(ImageDataset::new("bad", 1, 1, 3, vec![0], vec![5]).is_err());
    }
}
