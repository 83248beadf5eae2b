//! The KTO loss (`docs/kto.md`, TRL `_compute_loss`) and its metrics.
//!
//! Implied reward r = log πθ(y|x) − log πref(y|x) (summed completion log-probs). Reference point
//! z = max(0, mean KL log-ratio on mismatched pairs), a detached constant. Desirable rows lose
//! λ_D·(1 − σ(β(r − z))): a gain relative to z; undesirable rows lose λ_U·(1 − σ(β(z − r))).

use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// KTO with the KL reference point z.
    Kto,
    /// TRL's `apo_zero_unpaired`: KTO with z ≡ 0, no KL sequences.
    ApoZeroUnpaired,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KtoLossConfig {
    pub beta: f64,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
    pub loss_type: LossType,
}

impl Default for KtoLossConfig {
    fn default() -> Self {
        Self { beta: 0.1, desirable_weight: 1.0, undesirable_weight: 1.0, loss_type: LossType::Kto }
    }
}

/// z0: the mean of the per-group mean KL log-ratios, then clamped at 0 (TRL averages each
/// process's mean and clamps after; with one process there is one group).
pub fn reference_point(groups: &[&[f64]]) -> f64 {
    let means: Vec<f64> =
        groups.iter().filter(|g| !g.is_empty()).map(|g| g.iter().sum::<f64>() / g.len() as f64).collect();
    if means.is_empty() {
        return 0.0;
    }
    (means.iter().sum::<f64>() / means.len() as f64).max(0.0)
}

/// Per-example losses for rewards `r` (policy − reference log-probs) against the reference
/// point `z`. TRL computes `1 − sigmoid` literally in fp32, and so does this.
pub fn kto_losses(rewards: Tensor<1>, z: f64, labels: &[bool], cfg: &KtoLossConfig) -> Tensor<1> {
    signed_losses(rewards.sub_scalar(z), labels, cfg)
}

/// [`kto_losses`] with `z` a device scalar `[1]`, so the trainer need not read it back first.
pub fn kto_losses_z(rewards: Tensor<1>, z: Tensor<1>, labels: &[bool], cfg: &KtoLossConfig) -> Tensor<1> {
    signed_losses(rewards - z, labels, cfg)
}

fn signed_losses(r_minus_z: Tensor<1>, labels: &[bool], cfg: &KtoLossConfig) -> Tensor<1> {
    let device = r_minus_z.device();
    let n = labels.len();
    let sign: Vec<f32> = labels.iter().map(|&d| if d { 1.0 } else { -1.0 }).collect();
    let weight: Vec<f32> =
        labels.iter().map(|&d| if d { cfg.desirable_weight } else { cfg.undesirable_weight } as f32).collect();
    let sign = Tensor::<1>::from_data(TensorData::new(sign, [n]), &device);
    let weight = Tensor::<1>::from_data(TensorData::new(weight, [n]), &device);
    let u = (r_minus_z * sign).mul_scalar(cfg.beta);
    (sigmoid(u).neg().add_scalar(1.0)) * weight
}

/// Metrics of one optimizer step, named as TRL logs them. A class absent from the batch has no
/// `rewards/*` or `logps/*` entry (and no margin), rather than a misleading zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub step: usize,
    pub loss: f64,
    pub kl: f64,
    #[serde(rename = "rewards/chosen", skip_serializing_if = "Option::is_none", default)]
    pub rewards_chosen: Option<f64>,
    #[serde(rename = "rewards/rejected", skip_serializing_if = "Option::is_none", default)]
    pub rewards_rejected: Option<f64>,
    #[serde(rename = "rewards/margins", skip_serializing_if = "Option::is_none", default)]
    pub rewards_margins: Option<f64>,
    #[serde(rename = "logps/chosen", skip_serializing_if = "Option::is_none", default)]
    pub logps_chosen: Option<f64>,
    #[serde(rename = "logps/rejected", skip_serializing_if = "Option::is_none", default)]
    pub logps_rejected: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    pub learning_rate: f64,
}

/// One row of a step's batch: its implied reward r = log πθ − log πref (before β) and label,
/// for plots of the batch (the page's explainer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowScore {
    /// The row's index in the dataset (`KtoDataset::examples`).
    pub row: usize,
    pub log_ratio: f64,
    pub label: bool,
    /// The row's text, so that a plot of the batch can say which row a point is.
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub completion: String,
}

pub fn row_scores(policy_logps: &[f64], ref_logps: &[f64], labels: &[bool], rows: &[usize]) -> Vec<RowScore> {
    policy_logps
        .iter()
        .zip(ref_logps)
        .zip(labels.iter().zip(rows))
        .map(|((p, q), (&label, &row))| RowScore {
            row,
            log_ratio: p - q,
            label,
            prompt: String::new(),
            completion: String::new(),
        })
        .collect()
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// Metrics of one microbatch from host values.
pub fn batch_metrics(
    policy_logps: &[f64],
    ref_logps: &[f64],
    labels: &[bool],
    z: f64,
    loss: f64,
    beta: f64,
) -> Metrics {
    let r: Vec<f64> = policy_logps.iter().zip(ref_logps).map(|(p, q)| p - q).collect();
    let pick = |want: bool, xs: &[f64]| mean(xs.iter().zip(labels).filter(|(_, l)| **l == want).map(|(x, _)| *x));
    let chosen = pick(true, &r).map(|m| beta * m);
    let rejected = pick(false, &r).map(|m| beta * m);
    Metrics {
        loss,
        kl: z,
        rewards_chosen: chosen,
        rewards_rejected: rejected,
        rewards_margins: chosen.zip(rejected).map(|(c, r)| c - r),
        logps_chosen: pick(true, policy_logps),
        logps_rejected: pick(false, policy_logps),
        ..Default::default()
    }
}

/// Average microbatch metrics into one optimizer step's (a class's metrics are averaged over the
/// microbatches where it was present).
pub fn average_metrics(parts: &[Metrics]) -> Metrics {
    let avg = |f: &dyn Fn(&Metrics) -> Option<f64>| mean(parts.iter().filter_map(f));
    let chosen = avg(&|m| m.rewards_chosen);
    let rejected = avg(&|m| m.rewards_rejected);
    Metrics {
        loss: avg(&|m| Some(m.loss)).unwrap_or(f64::NAN),
        kl: avg(&|m| Some(m.kl)).unwrap_or(0.0),
        rewards_chosen: chosen,
        rewards_rejected: rejected,
        rewards_margins: chosen.zip(rejected).map(|(c, r)| c - r),
        logps_chosen: avg(&|m| m.logps_chosen),
        logps_rejected: avg(&|m| m.logps_rejected),
        ..Default::default()
    }
}

/// TRL's class-imbalance advice: weights such that λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImbalanceAdvice {
    /// Suggested desirable_weight range (for the current undesirable weight), rounded to 2 decimals.
    pub desirable_weight: (f64, f64),
    /// Suggested undesirable_weight range (for the current desirable weight).
    pub undesirable_weight: (f64, f64),
    /// True when neither weight is inside its range: TRL warns then.
    pub warn: bool,
}

pub fn imbalance_advice(
    n_desirable: usize,
    n_undesirable: usize,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Option<ImbalanceAdvice> {
    if n_desirable == 0 || n_undesirable == 0 {
        return None;
    }
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let (nd, nu) = (n_desirable as f64, n_undesirable as f64);
    let d = (round2(nu * undesirable_weight / nd), round2(1.33 * nu * undesirable_weight / nd));
    let u = (round2(nd * desirable_weight / (1.33 * nu)), round2(nd * desirable_weight / nu));
    let inside = |x: f64, (lo, hi): (f64, f64)| x >= lo && x <= hi;
    Some(ImbalanceAdvice {
        desirable_weight: d,
        undesirable_weight: u,
        warn: !(inside(desirable_weight, d) || inside(undesirable_weight, u)),
    })
}

/// The value-function picture: per-example KTO loss at each implied reward `r` (log-ratio, not
/// scaled by β), for a desirable and for an undesirable example, from [`kto_losses`] itself.
/// With `apo_zero_unpaired` the reference point is 0 whatever `z` is.
/// The loss of a desirable and of an undesirable row at each reward of a curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossCurve {
    pub desirable: Vec<f64>,
    pub undesirable: Vec<f64>,
}

pub async fn loss_curve(
    r: &[f64],
    z: f64,
    cfg: &KtoLossConfig,
    device: &burn::tensor::Device,
) -> crate::Result<LossCurve> {
    let z = if cfg.loss_type == LossType::ApoZeroUnpaired { 0.0 } else { z };
    let rt =
        || Tensor::<1>::from_data(TensorData::new(r.iter().map(|&x| x as f32).collect::<Vec<_>>(), [r.len()]), device);
    let desirable = kto_losses(rt(), z, &vec![true; r.len()], cfg);
    let undesirable = kto_losses(rt(), z, &vec![false; r.len()], cfg);
    let tx = burn::tensor::Transaction::default().register(desirable).register(undesirable);
    let mut host = crate::device::read_all(tx).await?.into_iter();
    Ok(LossCurve { desirable: host.next().unwrap_or_default(), undesirable: host.next().unwrap_or_default() })
}
