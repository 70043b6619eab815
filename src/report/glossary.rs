//! What each reported metric is, and its unit: every report lists the definitions of the metrics its
//! tables show, so that a reader never has to guess what "coverage" or "rho" means.

/// The definition of a metric key, with its unit; None for a key this glossary does not know (the
/// report then says so).
pub fn define(metric: &str) -> Option<&'static str> {
    // Generator metrics come in a w/o-CFG (`gen/`) and a w/-CFG (`gen_cfg/`) form, per feature network.
    let base = metric
        .strip_prefix("gen_cfg/")
        .map(|m| format!("gen/{m}"))
        .unwrap_or_else(|| metric.to_string());
    let base = base
        .strip_suffix("_classifier")
        .or_else(|| base.strip_suffix("_efficientnet"))
        .unwrap_or(&base);
    Some(match base {
        "final/start_nll" => {
            "mean NLL of the free points at step 0 (y ~ N(0, I)), nats per 2-D point"
        }
        "final/points_nll" => {
            "mean NLL of the free points after alignment under the target's density (analytic for \
             Gaussian mixtures, Gaussian KDE with bandwidth 0.1 otherwise), nats per 2-D point"
        }
        "final/true_nll" => {
            "the same NLL for true samples of the target: the level aligned points would reach if \
             they were distributed as the target"
        }
        "final/coverage" => {
            "share of free points whose NLL is below the 95th percentile of the true samples' NLL \
             (in [0, 1]; high when points sit where the target has mass, whether or not they cover \
             all of it: read it with the energy distance)"
        }
        "final/energy_distance" => {
            "energy distance between the free points and true samples (2 E|X-Y| - E|X-X'| - E|Y-Y'|, \
             in the target's standardised units; 0 for equal distributions, large when points \
             collapse or miss parts of the target)"
        }
        "final/energy_distance_ref" => {
            "the energy distance between two independent true samples of the same size: the noise \
             floor of the energy distance"
        }
        "final/flow_nll_points" | "final/flow_nll_true" => {
            "exact NLL under the flow prior itself (ODE with exact divergence) of a subset of the \
             free points / of true samples, nats per 2-D point"
        }
        "final/curve_rank_corr" => {
            "Spearman rank correlation, over the evaluation steps, between the L_align curve and \
             the NLL curve of the free points (in [-1, 1])"
        }
        "final/landscape_rank_corr" => {
            "Spearman rank correlation, over a grid on [-3, 3]^2, between L_align of a point and its \
             NLL (in [-1, 1]; the paper's claim is that they agree)"
        }
        "final/modes_covered" => {
            "mixtures only: modes holding at least 5% of the free points (by nearest mean)"
        }
        "final/largest_mode_share" => "mixtures only: share of the free points at the fullest mode",
        "prior/loss" => {
            "flow-matching loss of the prior at the end of training: mean squared error of the \
             velocity per element (dimensionless, data standardised)"
        }
        "align/l_align" => {
            "L_align of the latent tokens on a fixed test batch: mean squared velocity error per \
             element under the frozen prior, 4 (t, x0) draws per token"
        }
        "align/knn_nll" => {
            "k-NN density estimate's NLL of the latent tokens against the prior's target set \
             (k = 5, nats per token; paper Fig. 4's proxy)"
        }
        "align/flow_nll" => "exact NLL of latent tokens under the flow prior, nats per token",
        "test/psnr" => "peak signal-to-noise ratio of reconstructions of test images in [0, 1], dB",
        "test/ssim" => "structural similarity of reconstructions of test images (in [0, 1])",
        "ae/l2" => "the tokenizer's pixel L2 loss (mean squared error) at the end of training",
        "train/steps_per_s" => "training steps per second of the run (wall clock, this machine)",
        "gen/fid" => {
            "Frechet distance between feature statistics of generated and real test images on the \
             named feature network (not Inception-v3 FID: compare rows, not with the paper)"
        }
        "gen/is" => {
            "Inception Score on the named classifier's softmax (exp of the mean KL between \
             conditional and marginal class distributions, 10 splits); 1 to the number of classes"
        }
        "gen/precision" | "gen/recall" => {
            "k-NN precision / recall (k = 3) of generated against real features: share of samples \
             inside the real manifold / of real images inside the samples' manifold"
        }
        "gen/loss" => "the generator's training loss at the end (flow matching, per element)",
        "gen/class_signal" => {
            "distance between the classes' conditions relative to |z| (0 when the class does not \
             reach the flow head)"
        }
        "ref/is" => "Inception Score of real test images on the same classifier: the reference",
        "gen/class_acc" => {
            "share of generated samples that the project's classifier assigns to the class they \
             were drawn for (in [0, 1]; 1 / classes for samples that carry no class)"
        }
        "ref/class_acc" => {
            "the classifier's accuracy on real test images: the ceiling for the generated samples' \
             class accuracy"
        }
        "projection/distortion_cv" => {
            "coefficient of variation of the ratio of projected to original pairwise distances (0 \
             for a projection that preserves distances up to scale)"
        }
        "projection/ratio_q05" | "projection/ratio_q95" => {
            "5th / 95th percentile of the ratio of projected to original pairwise distances"
        }
        "diag/two_nn_dim" => "TwoNN estimate of the target set's intrinsic dimension",
        "diag/knn_dist_cv" => {
            "coefficient of variation of the k-th nearest-neighbour distance in the target set"
        }
        "diag/separation" => {
            "mean distance between random pairs over the mean nearest-neighbour distance (large for \
             tight, separated clusters)"
        }
        "eval/frechet" | "eval/frechet_reference" => {
            "Frechet distance between Gaussians fitted to the prior's samples (reference: training \
             rows) and to held-out rows"
        }
        "eval/precision" | "eval/recall" | "eval/recall_reference" | "eval/precision_reference" => {
            "k-NN precision / recall of the prior's samples (reference: training rows) against \
             held-out rows"
        }
        "eval/knn_log_radius_samples" | "eval/knn_log_radius_heldout" => {
            "mean log distance from the prior's samples / held-out rows to their k-th nearest \
             training row"
        }
        _ => return rfid(metric),
    })
}

fn rfid(metric: &str) -> Option<&'static str> {
    metric.starts_with("rfid/").then_some(
        "Frechet distance between feature statistics of reconstructions and of the original test \
         images on the named feature network (the project's classifier, or EfficientNet-Lite0)",
    )
}

#[cfg(test)]
mod tests {
    use super::define;

    #[test]
    fn every_metric_the_sweep_files_report_is_defined() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("sweeps/") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for part in text.split("metric = \"").skip(1) {
                let key = part.split('"').next().unwrap_or("");
                if define(key).is_none() {
                    missing.push(format!("{}: {key}", path.display()));
                }
            }
        }
        assert!(missing.is_empty(), "undefined metrics: {missing:?}");
        assert!(define("gen_cfg/fid_classifier").is_some_and(|d| d.contains("Frechet")));
        assert!(define("rfid/efficientnet").is_some_and(|d| d.contains("reconstructions")));
        assert_eq!(define("no/such_metric"), None);
    }
}
