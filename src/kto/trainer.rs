//! The KTO training loop: policy (trainable, on the autodiff device) and reference (a frozen
//! copy on the plain device, so it never builds a graph); gradient accumulation, global-norm
//! clipping and burn's AdamW/SGD. Written by hand because `burn-train` does not run on wasm.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::batch::{KtoBatch, KtoDataset};
use super::data::KtoExample;
use super::loss::{
    KtoLossConfig, LossType, Metrics, average_metrics, batch_metrics, completion_logps, kto_losses, kto_losses_z,
};
use crate::device::read_all;
use crate::error::config_err;
use crate::model::{HostAdapter, LoraConfig, Model, ModelWeights};
use crate::tokenizer::{Message, Tokenizer};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub loss: KtoLossConfig,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (Hugging Face's default is 0).
    pub weight_decay: f64,
    /// Rows per microbatch: also the block inside which KL completions are rotated.
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (Hugging Face's `max_grad_norm`); `None` = no clipping.
    pub max_grad_norm: Option<f64>,
    pub max_length: usize,
    pub steps: usize,
    /// Shuffle the rows once (seeded) before batching; TRL itself never shuffles.
    pub shuffle: bool,
    pub seed: u64,
    /// Train LoRA adapters on a frozen base (the reference is the base, adapters off); `None` =
    /// full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Wrap each row in the model's chat template (TRL's conversational format).
    pub chat: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: KtoLossConfig::default(),
            optimizer: OptimizerKind::Adamw,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            max_length: 1024,
            steps: 30,
            shuffle: true,
            seed: 42,
            lora: None,
            chat: false,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let c = &self.loss;
        if !(c.beta > 0.0 && c.beta.is_finite()) {
            return Err(config_err(format!("beta must be > 0, got {}", c.beta)));
        }
        if !(c.desirable_weight >= 0.0 && c.undesirable_weight >= 0.0) {
            return Err(config_err("desirable and undesirable weights must be >= 0"));
        }
        if !(self.learning_rate >= 0.0 && self.learning_rate.is_finite()) {
            return Err(config_err(format!("learning rate must be a finite number >= 0, got {}", self.learning_rate)));
        }
        if self.grad_accum == 0 {
            return Err(config_err("gradient accumulation must be at least 1"));
        }
        if self.max_grad_norm.is_some_and(|m| m <= 0.0) {
            return Err(config_err("max grad norm must be > 0 (or off)"));
        }
        Ok(())
    }

    /// [`Self::dataset`] for a model: `max_length` is capped at the model's context, so that the
    /// default (1024) works for a GPT-2 with 128 positions instead of failing mid-run.
    pub fn dataset_for(
        &self,
        tok: &Tokenizer,
        model: &crate::model::ModelConfig,
        examples: &[KtoExample],
    ) -> Result<KtoDataset> {
        let capped = Self { max_length: self.max_length.min(model.max_seq_len), ..self.clone() };
        capped.dataset(tok, examples)
    }

    /// Tokenize and batch `examples` per TRL, after the optional seeded shuffle.
    pub fn dataset(&self, tok: &Tokenizer, examples: &[KtoExample]) -> Result<KtoDataset> {
        self.validate()?;
        let mut rows = if self.chat {
            examples.iter().map(|e| chat_row(tok, e)).collect::<Result<Vec<_>>>()?
        } else {
            examples.to_vec()
        };
        if self.shuffle {
            rows.shuffle(&mut StdRng::seed_from_u64(self.seed));
        }
        KtoDataset::new(tok, &rows, self.batch_size, self.max_length, self.loss.loss_type == LossType::Kto)
    }
}

/// A row in TRL's conversational form: the prompt as a user turn with the generation prompt,
/// the completion as the assistant turn and its end token.
pub fn chat_row(tok: &Tokenizer, e: &KtoExample) -> Result<KtoExample> {
    let (prompt, completion) = tok.chat_split(&[Message::new("user", &e.prompt)], &e.completion)?;
    Ok(KtoExample { prompt, completion, label: e.label })
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
    fn metrics(&self, host: &mut impl Iterator<Item = Vec<f64>>, beta: f64) -> Metrics {
        let scalar = |h: &mut dyn Iterator<Item = Vec<f64>>| h.next().and_then(|v| v.first().copied());
        let loss = scalar(host).unwrap_or(f64::NAN);
        let logps = host.next().unwrap_or_default();
        let z = if self.z.is_some() { scalar(host).unwrap_or(f64::NAN) } else { 0.0 };
        batch_metrics(&logps, &self.reference_main, &self.labels, z, loss, beta)
    }
}

/// Σ‖g‖² over every parameter's gradient, as a device scalar (a tied weight is one parameter).
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.factor));
        }
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
        Ok((pending.metrics(&mut host, self.cfg.loss.beta), grads))
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
            },
            grads,
        ))
    }

    /// One optimizer step over `grad_accum` microbatches, with one read-back: the losses, the
    /// log-probs for the metrics and the gradient norm travel together, after the backward passes
    /// and before the update. On a non-finite loss or gradient the weights are left untouched and
    /// an error says so.
    pub async fn step(&mut self, data: &KtoDataset) -> Result<Metrics> {
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
        let parts: Vec<Metrics> = pending.iter().map(|p| p.metrics(&mut host, self.cfg.loss.beta)).collect();
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
        Ok(metrics)
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
