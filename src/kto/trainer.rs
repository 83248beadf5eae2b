//! The KTO training loop: policy (trainable, on the autodiff device) and reference (a frozen
//! copy on the plain device, so it never builds a graph); gradient accumulation, global-norm
//! clipping and burn's AdamW/SGD. Written by hand because `burn-train` does not run on wasm.
//! [`Trainer::run`] is the one run driver every front end (CLI, page, mood recipe) goes through.
//! About 400 lines because a step is one sequence (reference cache, microbatches, one read-back,
//! clipping, update) best read in order; its settings, loss and gradient helpers live beside it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use serde::{Deserialize, Serialize};

use super::batch::{KtoBatch, KtoDataset};
use super::config::{OptimizerKind, TrainConfig};
use super::grads::{Scale, SquaredNorm};
use super::loss::{LossType, Metrics, RowScore, average_metrics, batch_metrics, kto_losses, kto_losses_z, row_scores};
use crate::device::read_all;
use crate::error::config_err;
use crate::model::{HostAdapter, Model, ModelWeights};
use crate::score::completion_logps;
use crate::{Error, Result};

/// What a run's step callback tells the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// One optimizer step as front ends see it: TRL's metrics, and each row of the step's batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Steps of the run in all (`TrainConfig::steps`).
    pub total: usize,
    pub rows: Vec<RowScore>,
    /// The same metrics on the held-out rows after this step (when the run has some).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heldout: Option<Metrics>,
}

/// How a run ended: `steps` is the trainer's count after it, `stopped` when the callback asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub steps: usize,
    pub stopped: bool,
    pub last: Option<Metrics>,
}

pub struct Trainer {
    policy: Model,
    reference: Model,
    optim: burn::optim::ModuleOptimizer,
    cfg: TrainConfig,
    device: Device,
    ad_device: Device,
    step: usize,
    next_batch: usize,
    ref_cache: RefCell<HashMap<u64, RefLogps>>,
}

#[derive(Debug, Clone)]
struct RefLogps {
    main: Vec<f64>,
    kl: Option<Vec<f64>>,
}

/// Identity of a batch by content (token ids and lengths), so a cache hit is never stale.
fn batch_key(batch: &KtoBatch, with_kl: bool) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    batch.main.ids.hash(&mut h);
    batch.main.lengths.hash(&mut h);
    batch.main.completion_mask.iter().for_each(|m| m.to_bits().hash(&mut h));
    if let (true, Some(kl)) = (with_kl, &batch.kl) {
        kl.ids.hash(&mut h);
        kl.lengths.hash(&mut h);
        kl.completion_mask.iter().for_each(|m| m.to_bits().hash(&mut h));
    }
    h.finish()
}

/// One microbatch's results still on the device, read with the step's other values.
struct PendingMicrobatch {
    loss: Tensor<1>,
    policy_logps: Tensor<1>,
    /// The reference point the loss used (`None`: z ≡ 0).
    z: Option<Tensor<1>>,
    reference_main: Vec<f64>,
    labels: Vec<bool>,
    rows: Vec<usize>,
}

impl PendingMicrobatch {
    fn register(&self, tx: Transaction) -> Transaction {
        let tx = tx.register(self.loss.clone().inner()).register(self.policy_logps.clone().inner());
        match &self.z {
            Some(z) => tx.register(z.clone()),
            None => tx,
        }
    }

    /// Metrics from the values `register` queued, taken from `host` in the same order; `kl` is
    /// the z the loss used, as TRL logs it.
    fn metrics(&self, host: &mut impl Iterator<Item = Vec<f64>>, beta: f64) -> (Metrics, Vec<RowScore>) {
        let scalar = |h: &mut dyn Iterator<Item = Vec<f64>>| h.next().and_then(|v| v.first().copied());
        let loss = scalar(host).unwrap_or(f64::NAN);
        let logps = host.next().unwrap_or_default();
        let z = if self.z.is_some() { scalar(host).unwrap_or(f64::NAN) } else { 0.0 };
        (
            batch_metrics(&logps, &self.reference_main, &self.labels, z, loss, beta),
            row_scores(&logps, &self.reference_main, &self.labels, &self.rows),
        )
    }
}

impl Trainer {
    /// `device` is the plain (non-autodiff) device; the policy trains on `device.autodiff()`.
    pub fn new(weights: &ModelWeights, device: &Device, cfg: TrainConfig) -> Result<Self> {
        Self::with_reference(weights, weights, device, cfg)
    }

    /// Start from `policy` weights, measured against a different `reference` (e.g. to evaluate a
    /// trained checkpoint against its base model).
    pub fn with_reference(
        policy: &ModelWeights,
        reference: &ModelWeights,
        device: &Device,
        cfg: TrainConfig,
    ) -> Result<Self> {
        Self::build(policy, reference, None, device, cfg)
    }

    /// Continue training a LoRA adapter (a PEFT adapter loaded from disk) on `base`; `cfg.lora`
    /// must describe that adapter. The reference is the base, adapters off, as in a fresh run.
    pub fn resume_lora(
        base: &ModelWeights,
        adapters: &[HostAdapter],
        device: &Device,
        cfg: TrainConfig,
    ) -> Result<Self> {
        if cfg.lora.is_none() {
            return Err(config_err("continuing an adapter needs its LoRA settings"));
        }
        Self::build(base, base, Some(adapters), device, cfg)
    }

    fn build(
        policy: &ModelWeights,
        reference: &ModelWeights,
        adapters: Option<&[HostAdapter]>,
        device: &Device,
        cfg: TrainConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        if policy.config != reference.config {
            return Err(config_err("the policy and reference models have different architectures"));
        }
        let ad_device = device.clone().autodiff();
        let (policy, reference) = match &cfg.lora {
            Some(lora) => {
                if !std::ptr::eq(policy, reference) && policy != reference {
                    return Err(config_err("with LoRA the reference is the base model itself; pass the same weights"));
                }
                let base = Model::from_weights(policy, &ad_device);
                let policy = match adapters {
                    Some(a) => base.with_adapters(lora, a, &ad_device)?,
                    None => base.with_lora(lora, cfg.seed, &ad_device)?,
                };
                // The same tensors, adapters off: no second copy of the model.
                let reference = policy.valid().without_adapters();
                (policy, reference)
            }
            None => (Model::from_weights(policy, &ad_device), Model::from_weights(reference, device)),
        };
        let optim = match cfg.optimizer {
            OptimizerKind::Adamw => {
                AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(cfg.weight_decay as f32).init()
            }
            OptimizerKind::Sgd => SgdConfig::new().init(),
        };
        Ok(Self {
            policy,
            reference,
            optim,
            cfg,
            device: device.clone(),
            ad_device,
            step: 0,
            next_batch: 0,
            ref_cache: RefCell::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }
    pub fn steps_done(&self) -> usize {
        self.step
    }
    /// The trained model for inference (no autodiff).
    pub fn policy(&self) -> Model {
        self.policy.valid()
    }
    pub fn reference(&self) -> &Model {
        &self.reference
    }
    /// The trainable model itself (on the autodiff device), for gradient checks.
    pub fn policy_autodiff(&self) -> &Model {
        &self.policy
    }

    /// Reference log-probs of a batch's main and KL sequences. The reference never changes, so
    /// they are computed once per distinct batch and reused (TRL's `precompute_ref_log_probs`,
    /// done lazily): a training step then runs two forwards instead of four.
    async fn reference_logps(&self, batch: &KtoBatch, with_kl: bool) -> Result<RefLogps> {
        let key = batch_key(batch, with_kl);
        if let Some(hit) = self.ref_cache.borrow().get(&key) {
            return Ok(hit.clone());
        }
        let mut tx = Transaction::default().register(completion_logps(&self.reference, &batch.main, &self.device));
        if let (true, Some(kl)) = (with_kl, &batch.kl) {
            tx = tx.register(completion_logps(&self.reference, kl, &self.device));
        }
        let mut host = read_all(tx).await?.into_iter();
        let value = RefLogps { main: host.next().unwrap_or_default(), kl: host.next() };
        self.ref_cache.borrow_mut().insert(key, value.clone());
        Ok(value)
    }

    /// Loss, metrics and (with `backward`) gradients of one microbatch, scaled by `scale`.
    pub async fn microbatch(
        &self,
        batch: &KtoBatch,
        backward: bool,
        scale: f64,
    ) -> Result<(Metrics, Option<GradientsParams>)> {
        let (pending, grads) = self.queue_microbatch(batch, backward, scale).await?;
        let mut host = read_all(pending.register(Transaction::default())).await?.into_iter();
        Ok((pending.metrics(&mut host, self.cfg.loss.beta).0, grads))
    }

    /// Queue one microbatch's forward passes, loss and backward on the device, reading nothing
    /// back: the reference point z is computed on the device too (TRL computes it there), so a
    /// training step costs one read-back however many microbatches it has. Only a batch seen for
    /// the first time reads its reference log-probs first.
    async fn queue_microbatch(
        &self,
        batch: &KtoBatch,
        backward: bool,
        scale: f64,
    ) -> Result<(PendingMicrobatch, Option<GradientsParams>)> {
        let cfg = &self.cfg.loss;
        let n = batch.labels.len();
        // Learned positions (GPT-2) end at the context; refuse rather than index past them.
        let ctx = self.reference.config().max_seq_len;
        if let Some(len) =
            [Some(&batch.main), batch.kl.as_ref()].into_iter().flatten().map(|c| c.len).max().filter(|&l| l > ctx)
        {
            return Err(config_err(format!(
                "a batch has rows of {len} tokens but the model's context is {ctx}: lower the max length to {ctx} or less"
            )));
        }
        let with_kl = cfg.loss_type == LossType::Kto && batch.kl.is_some();
        let reference = self.reference_logps(batch, with_kl).await?;
        let host_tensor = |xs: &[f64], device: &Device| {
            Tensor::<1>::from_data(
                TensorData::new(xs.iter().map(|&x| x as f32).collect::<Vec<_>>(), [xs.len()]),
                device,
            )
        };
        // The reference point z = max(0, mean KL log-ratio): policy vs reference on the mismatched
        // pairs, no graph (the policy without autodiff), a constant for the loss.
        let frozen = self.policy.valid();
        let z = match (&batch.kl, &reference.kl) {
            (Some(kl), Some(r)) if with_kl => {
                Some((completion_logps(&frozen, kl, &self.device) - host_tensor(r, &self.device)).mean().clamp_min(0.0))
            }
            _ => None,
        };
        let (model, device) = if backward { (&self.policy, &self.ad_device) } else { (&frozen, &self.device) };
        let policy_logps = completion_logps(model, &batch.main, device);
        let rewards = policy_logps.clone() - host_tensor(&reference.main, device);
        let losses = match z.clone() {
            Some(z) => kto_losses_z(rewards, if backward { z.autodiff() } else { z }, &batch.labels, cfg),
            None => kto_losses(rewards, 0.0, &batch.labels, cfg),
        };
        let loss = losses.mean();
        let grads =
            backward.then(|| GradientsParams::from_grads(loss.clone().mul_scalar(scale).backward(), &self.policy));
        debug_assert_eq!(reference.main.len(), n);
        Ok((
            PendingMicrobatch {
                loss: loss.detach(),
                policy_logps: policy_logps.detach(),
                z,
                reference_main: reference.main,
                labels: batch.labels.clone(),
                rows: batch.rows.clone(),
            },
            grads,
        ))
    }

    /// Train until `cfg.steps` steps are done, calling `on_step` after each; its future is awaited
    /// before the next step (where a front end waits while paused), and `Control::Stop` ends the
    /// run early. A run that is continued picks up at the trainer's step count.
    pub async fn run<F, Fut>(&mut self, data: &KtoDataset, on_step: F) -> Result<RunEnd>
    where
        F: FnMut(&StepReport) -> Fut,
        Fut: Future<Output = Control>,
    {
        self.run_with_heldout(data, None, on_step).await
    }

    /// [`Self::run`], evaluating the `heldout` rows after every step (`StepReport::heldout`).
    pub async fn run_with_heldout<F, Fut>(
        &mut self,
        data: &KtoDataset,
        heldout: Option<&KtoDataset>,
        mut on_step: F,
    ) -> Result<RunEnd>
    where
        F: FnMut(&StepReport) -> Fut,
        Fut: Future<Output = Control>,
    {
        let mut last = None;
        while self.step < self.cfg.steps {
            let mut report = self.step_report(data).await?;
            if let Some(h) = heldout {
                report.heldout = Some(self.evaluate(h).await?);
            }
            let control = on_step(&report).await;
            last = Some(report.metrics);
            if control == Control::Stop {
                return Ok(RunEnd { steps: self.step, stopped: true, last });
            }
        }
        Ok(RunEnd { steps: self.step, stopped: false, last })
    }

    /// [`Self::step_report`]'s metrics.
    pub async fn step(&mut self, data: &KtoDataset) -> Result<Metrics> {
        Ok(self.step_report(data).await?.metrics)
    }

    /// One optimizer step over `grad_accum` microbatches, with one read-back: the losses, the
    /// log-probs for the metrics and the gradient norm travel together, after the backward passes
    /// and before the update. On a non-finite loss or gradient the weights are left untouched and
    /// an error says so.
    pub async fn step_report(&mut self, data: &KtoDataset) -> Result<StepReport> {
        let accum = self.cfg.grad_accum;
        let mut acc = GradientsAccumulator::<Model>::new();
        let mut pending = Vec::with_capacity(accum);
        for _ in 0..accum {
            let batch = data.batch(self.next_batch);
            self.next_batch += 1;
            let (p, grads) = self.queue_microbatch(&batch, true, 1.0 / accum as f64).await?;
            pending.push(p);
            acc.accumulate(&self.policy, grads.expect("backward requested"));
        }
        let mut grads = acc.grads();
        let mut norm = SquaredNorm { grads: &grads, sum: None };
        self.policy.visit(&mut norm);
        let sq = norm.sum.unwrap_or_else(|| Tensor::zeros([1], &self.ad_device));
        let mut tx = Transaction::default();
        for p in &pending {
            tx = p.register(tx);
        }
        let mut host = read_all(tx.register(sq.clone().inner())).await?.into_iter();
        let (parts, rows): (Vec<Metrics>, Vec<Vec<RowScore>>) =
            pending.iter().map(|p| p.metrics(&mut host, self.cfg.loss.beta)).unzip();
        let grad_norm = host.next().and_then(|v| v.first().copied()).unwrap_or(f64::NAN).sqrt();
        let mut metrics = average_metrics(&parts);
        if !metrics.loss.is_finite() || !grad_norm.is_finite() {
            return Err(Error::NonFinite(format!(
                "step {}: the loss ({}) or gradient norm ({grad_norm}) is not finite; training stopped and the weights \
                 are those of the previous step. Lower the learning rate or beta.",
                self.step + 1,
                metrics.loss
            )));
        }
        if let Some(max) = self.cfg.max_grad_norm {
            // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6) when that is < 1.
            let coef = max / (grad_norm + 1e-6);
            if coef < 1.0 {
                self.policy.visit(&mut Scale { grads: &mut grads, factor: coef });
            }
        }
        // Hand the optimizer the only handle to the weights (the reference, a cheap handle copy,
        // stands in meanwhile) so the backend can update them in place instead of copying.
        let policy = std::mem::replace(&mut self.policy, self.reference.clone());
        self.policy = self.optim.step(self.cfg.learning_rate, policy, grads);
        self.step += 1;
        metrics.step = self.step;
        metrics.grad_norm = Some(grad_norm);
        metrics.learning_rate = self.cfg.learning_rate;
        let mut rows = rows.concat();
        for r in &mut rows {
            if let Some(e) = data.examples.get(r.row) {
                (r.prompt, r.completion) = (e.prompt.clone(), e.completion.clone());
            }
        }
        Ok(StepReport { metrics, total: self.cfg.steps, rows, heldout: None })
    }

    /// Loss and metrics over every batch of `data` without updating (averaged per batch).
    pub async fn evaluate(&self, data: &KtoDataset) -> Result<Metrics> {
        let mut parts = Vec::with_capacity(data.num_batches());
        for i in 0..data.num_batches() {
            parts.push(self.microbatch(&data.batch(i), false, 1.0).await?.0);
        }
        let mut m = average_metrics(&parts);
        m.step = self.step;
        Ok(m)
    }
}
