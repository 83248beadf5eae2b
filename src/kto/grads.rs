//! Whole-model gradient utilities for the trainer: the global norm (for clipping and the
//! `grad_norm` metric) and scaling every gradient by one factor.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Σ‖g‖² over every parameter's gradient, as a device scalar (a tied weight is one parameter).
pub struct SquaredNorm<'a> {
    pub grads: &'a GradientsParams,
    pub sum: Option<Tensor<1>>,
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

pub struct Scale<'a> {
    pub grads: &'a mut GradientsParams,
    pub factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}
