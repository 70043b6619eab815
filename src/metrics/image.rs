//! Reconstruction metrics on images with values in [0, 1]: PSNR and SSIM (Wang et al. 2004: an
//! 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, over the valid region,
//! as scikit-image's `structural_similarity(gaussian_weights=True, use_sample_covariance=False)`).

/// Mean squared error between two equally long arrays.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64
}

/// PSNR in dB for data range 1 from a mean squared error (capped at 1e-12, 120 dB).
pub fn psnr_from_mse(mse: f64) -> f64 {
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// Mean PSNR over images (each `pixels` long): the per-image PSNR averaged, as reconstruction tables
/// report it.
pub fn psnr(reference: &[f32], test: &[f32], pixels: usize) -> f64 {
    let n = reference.len() / pixels.max(1);
    reference
        .chunks_exact(pixels)
        .zip(test.chunks_exact(pixels))
        .map(|(a, b)| psnr_from_mse(mse(a, b)))
        .sum::<f64>()
        / n.max(1) as f64
}

const WIN: usize = 11;
const SIGMA: f64 = 1.5;

fn gaussian_window() -> [f64; WIN] {
    let mut w = [0f64; WIN];
    let c = (WIN / 2) as f64;
    for (i, v) in w.iter_mut().enumerate() {
        *v = (-((i as f64 - c).powi(2)) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = w.iter().sum();
    w.map(|v| v / s)
}

/// Separable Gaussian filter over the valid region: (h - 10) x (w - 10) outputs.
fn filter(img: &[f64], h: usize, w: usize, g: &[f64; WIN]) -> Vec<f64> {
    let ow = w + 1 - WIN;
    let oh = h + 1 - WIN;
    let mut rows = vec![0f64; h * ow];
    for r in 0..h {
        for c in 0..ow {
            rows[r * ow + c] = (0..WIN).map(|k| g[k] * img[r * w + c + k]).sum();
        }
    }
    let mut out = vec![0f64; oh * ow];
    for r in 0..oh {
        for c in 0..ow {
            out[r * ow + c] = (0..WIN).map(|k| g[k] * rows[(r + k) * ow + c]).sum();
        }
    }
    out
}

/// SSIM of one `h x w` image pair (both at least 11 x 11).
pub fn ssim_image(a: &[f32], b: &[f32], h: usize, w: usize) -> f64 {
    assert!(h >= WIN && w >= WIN && a.len() == h * w && b.len() == h * w);
    let g = gaussian_window();
    let x: Vec<f64> = a.iter().map(|v| f64::from(*v)).collect();
    let y: Vec<f64> = b.iter().map(|v| f64::from(*v)).collect();
    let prod = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(s, t)| s * t).collect::<Vec<f64>>();
    let mx = filter(&x, h, w, &g);
    let my = filter(&y, h, w, &g);
    let mxx = filter(&prod(&x, &x), h, w, &g);
    let myy = filter(&prod(&y, &y), h, w, &g);
    let mxy = filter(&prod(&x, &y), h, w, &g);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let n = mx.len();
    (0..n)
        .map(|i| {
            let (ux, uy) = (mx[i], my[i]);
            let vx = mxx[i] - ux * ux;
            let vy = myy[i] - uy * uy;
            let cxy = mxy[i] - ux * uy;
            ((2.0 * ux * uy + c1) * (2.0 * cxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        })
        .sum::<f64>()
        / n as f64
}

/// Mean SSIM over images of `h x w` pixels.
pub fn ssim(reference: &[f32], test: &[f32], h: usize, w: usize) -> f64 {
    let n = reference.len() / (h * w).max(1);
    reference
        .chunks_exact(h * w)
        .zip(test.chunks_exact(h * w))
        .map(|(a, b)| ssim_image(a, b, h, w))
        .sum::<f64>()
        / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_arrays() {
        // Every pixel off by 0.1: MSE 0.01, PSNR 20 dB.
        let a = vec![0.5f32; 784];
        let b = vec![0.6f32; 784];
        assert!((psnr(&a, &b, 784) - 20.0).abs() < 1e-4);
        // Half the pixels off by 0.2: MSE 0.02, PSNR 10 log10(50).
        let c: Vec<f32> = (0..784)
            .map(|i| if i % 2 == 0 { 0.7 } else { 0.5 })
            .collect();
        assert!((psnr(&a, &c, 784) - 10.0 * 50f64.log10()).abs() < 1e-4);
        // Per-image PSNR is averaged: 20 dB and 10 log10(50) dB.
        let two_ref = [a.clone(), a.clone()].concat();
        let two = [b, c].concat();
        let want = (20.0 + 10.0 * 50f64.log10()) / 2.0;
        assert!((psnr(&two_ref, &two, 784) - want).abs() < 1e-4);
        // Identical images: the 120 dB cap.
        assert!((psnr(&a, &a, 784) - 120.0).abs() < 1e-9);
    }

    #[test]
    fn ssim_closed_forms() {
        // Constant images a and b: no contrast, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
        let (a, b) = (0.3f64, 0.7f64);
        let x = vec![a as f32; 28 * 28];
        let y = vec![b as f32; 28 * 28];
        let c1 = 1e-4;
        let want = (2.0 * a * b + c1) / (a * a + b * b + c1);
        assert!((ssim(&x, &y, 28, 28) - want).abs() < 1e-6);
        // An image against itself: 1. Against itself plus a constant: only the luminance term drops.
        let z: Vec<f32> = (0..784).map(|i| ((i * 37 % 101) as f32) / 200.0).collect();
        assert!((ssim(&z, &z, 28, 28) - 1.0).abs() < 1e-9);
        let shifted: Vec<f32> = z.iter().map(|v| v + 0.3).collect();
        let s = ssim(&z, &shifted, 28, 28);
        assert!(s < 1.0 && s > 0.5, "{s}");
        // Negated structure (1 - z): correlation -1 drives SSIM below 0.
        let neg: Vec<f32> = z.iter().map(|v| 0.5 - v).collect();
        assert!(ssim(&z, &neg, 28, 28) < 0.0);
    }
}
