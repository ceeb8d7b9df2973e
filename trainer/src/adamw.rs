//! AdamW whose step on a dense f32 CPU (flex) parameter is one parallel pass over the parameter,
//! its gradient and both moments, in place. burn's AdamW takes the same step as about a dozen
//! whole-tensor ops, each allocating a tensor the size of the parameter and each running on one
//! thread on flex: on the default model that was 1.2 s of a 10.5 s SELF-GRPO step
//! (experiments/009). No crate offers an optimiser step over burn's flex buffers, so this one is
//! written here.
//!
//! The arithmetic is burn's, operation by operation in f32 (m ← β1·m + (1−β1)·g,
//! v ← β2·v + (1−β2)·g², m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ), θ ← θ·(1−η·λ) − η·m̂/(√v̂ + ε)), so both
//! give the same bits (tests), and the state is burn's [`AdamWState`], so checkpoints are
//! unchanged. Every other backend or dtype takes burn's own step.

use burn::optim::{AdamW as BurnAdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::borrow::Cow;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// AdamW with burn's semantics (no AMSGrad, no cautious decay) and a fused CPU step.
#[derive(Clone)]
pub struct FusedAdamW {
    /// burn's optimiser with the same constants: the step off the fused path.
    fallback: BurnAdamW,
    constants: Constants,
}

/// β1, β2, ε, λ as burn's AdamW holds them (f32).
#[derive(Clone, Copy)]
struct Constants {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    /// AdamW with β1, β2, ε and decoupled weight decay λ.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let fallback = AdamWConfig::new().with_beta_1(beta_1).with_beta_2(beta_2).with_epsilon(epsilon).with_weight_decay(weight_decay).build();
        Self { fallback, constants: Constants { beta_1, beta_2, epsilon, weight_decay } }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(&self, lr: LearningRate, tensor: Tensor<D>, grad: Tensor<D>, state: Option<Self::State<D>>) -> (Tensor<D>, Option<Self::State<D>>) {
        let shape = tensor.shape();
        let moments = match &state {
            None => Some(None),
            Some(s) if s.momentum.max_moment_2.is_none() => flex_f32(&s.momentum.moment_1).zip(flex_f32(&s.momentum.moment_2)).map(Some),
            Some(_) => None,
        };
        let (Some(param), Some(grad_flex), Some(moments)) = (flex_f32(&tensor), flex_f32(&grad), moments) else {
            return self.fallback.step(lr, tensor, grad, state);
        };
        // the step owns the buffers from here: the parameter and the moments update in place
        let time = state.map_or(0, |s| s.momentum.time) + 1;
        drop((tensor, grad));
        let (mut m, mut v) = match moments {
            Some((m, v)) => (dense(m), dense(v)),
            None => (FlexTensor::zeros(shape.clone(), DType::F32), FlexTensor::zeros(shape, DType::F32)),
        };
        let mut param = dense(param);
        let grad = Gradient::of(&grad_flex);
        let (p, m_values, v_values) = (param.storage_mut(), m.storage_mut(), v.storage_mut());
        let step = Element::new(&self.constants, lr, time);
        if time == 1 {
            step.run::<true>(p, &grad, m_values, v_values)
        } else {
            step.run::<false>(p, &grad, m_values, v_values)
        }
        let [param, m, v] = [param, m, v].map(Tensor::from_primitive::<Flex>);
        (param, Some(AdamWState::new(AdaptiveMomentumState::new(time, m, v))))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        BurnAdamW::to_device(state, device)
    }
}

/// Rows of θ per task when the gradient is a transposed view.
const TILE: usize = 32;

/// A gradient's values in the order they are stored.
enum Gradient<'a> {
    /// Row-major, as θ (copied so when it was stored in another layout).
    RowMajor(Cow<'a, [f32]>),
    /// θ is `[rows, cols]` and the values are its transpose, row-major (the gradient of a
    /// weight used as Wᵀ in a matmul).
    Transposed { values: &'a [f32], rows: usize },
}

impl<'a> Gradient<'a> {
    fn of(g: &'a FlexTensor) -> Self {
        let layout = g.layout();
        let (n, storage) = (layout.num_elements(), g.storage::<f32>());
        if let Some(values) = g.as_slice::<f32>() {
            return Self::RowMajor(Cow::Borrowed(values));
        }
        match (layout.shape().as_slice(), layout.strides(), layout.start_offset()) {
            (&[rows, cols], &[1, stride], 0) if stride == rows as isize && storage.len() == n && cols > 0 => Self::Transposed { values: storage, rows },
            _ => Self::RowMajor(Cow::Owned(g.to_contiguous().into_data().try_into_vec::<f32>().expect("f32 values"))),
        }
    }
}

/// One element's AdamW step with the step's constants.
struct Element {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// 1 − η·λ (1 without decay: θ·1 is θ, bit for bit).
    keep: f32,
    lr: f32,
}

impl Element {
    fn new(c: &Constants, lr: f64, time: usize) -> Self {
        let t = time as i32;
        let decay_rate = lr * c.weight_decay as f64;
        Self {
            beta_1: c.beta_1,
            beta_2: c.beta_2,
            factor_1: 1.0 - c.beta_1,
            factor_2: 1.0 - c.beta_2,
            correction_1: 1f32 - c.beta_1.powi(t),
            correction_2: 1f32 - c.beta_2.powi(t),
            epsilon: c.epsilon,
            keep: if decay_rate == 0.0 { 1.0 } else { (1.0 - decay_rate) as f32 },
            lr: lr as f32,
        }
    }

    /// The step over every element, in parallel tasks; `FIRST` (t = 1) starts the moments
    /// from the gradient alone, as burn does.
    fn run<const FIRST: bool>(&self, p: &mut [f32], g: &Gradient, m: &mut [f32], v: &mut [f32]) {
        match g {
            Gradient::RowMajor(g) => p
                .par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| self.rows::<FIRST>(p, g, m, v)),
            // θ `[rows, cols]` in tiles of TILE rows; g(i, j) sits at j·rows + i: each tile's
            // gradients are gathered row-major first (TILE consecutive values per column), so
            // the step itself runs on three aligned rows of memory, as above
            &Gradient::Transposed { values, rows } => {
                let cols = p.len() / rows;
                let tile = TILE * cols;
                p.par_chunks_mut(tile).zip(m.par_chunks_mut(tile)).zip(v.par_chunks_mut(tile)).enumerate().for_each_init(
                    Vec::new,
                    |gathered, (t, ((p, m), v))| {
                        let tile_rows = p.len() / cols;
                        gathered.resize(p.len(), 0.0);
                        for j in 0..cols {
                            for (r, g) in values[j * rows + t * TILE..][..tile_rows].iter().enumerate() {
                                gathered[r * cols + j] = *g;
                            }
                        }
                        self.rows::<FIRST>(p, gathered, m, v);
                    },
                )
            }
        }
    }

    /// The step over aligned slices.
    fn rows<const FIRST: bool>(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
            self.apply::<FIRST>(p, *g, m, v);
        }
    }

    /// One of burn's tensor ops per operation, each rounded to f32 as it rounds them.
    #[inline(always)]
    fn apply<const FIRST: bool>(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g2 = g * g;
        (*m, *v) = if FIRST { (g * self.factor_1, g2 * self.factor_2) } else { (*m * self.beta_1 + g * self.factor_1, *v * self.beta_2 + g2 * self.factor_2) };
        let delta = (*m / self.correction_1) / ((*v / self.correction_2).sqrt() + self.epsilon);
        *p = *p * self.keep - delta * self.lr;
    }
}

/// `t` as a flex f32 tensor, or `None` when it lives on another backend or holds another dtype.
fn flex_f32<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    t.clone().try_into_primitive::<Flex>().ok().filter(|t| t.dtype() == DType::F32)
}

/// `t` with its elements in row-major order from the buffer's start (copied only when it is
/// a strided view or an offset slice).
fn dense(t: FlexTensor) -> FlexTensor {
    let n = t.layout().shape().num_elements();
    if t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n { t } else { t.to_contiguous() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use burn::tensor::TensorData;
    use selfemo_model::{Architecture, CausalLm, ModelConfig, completion_logprobs};

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.to_data().try_to_vec::<f32>().unwrap()
    }

    /// Where a flex tensor's values live.
    fn buffer<const D: usize>(t: &Tensor<D>) -> *const u8 {
        t.clone().try_into_primitive::<Flex>().unwrap().bytes().as_ptr()
    }

    fn random<const D: usize>(shape: [usize; D], seed: usize) -> Tensor<D> {
        let n = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((((i + 1) * 2654435761 + seed * 40503) % 20011) as f32 - 10005.0) / 5000.0).collect();
        Tensor::from_data(TensorData::new(x, shape), &Device::flex())
    }

    /// Parameter and moments after each of 5 steps equal burn's AdamW bit for bit: with and
    /// without weight decay, at changing rates, with gradients stored row-major, transposed
    /// (a tile of 32 rows and a partial one), flipped and sliced.
    #[test]
    fn steps_equal_burns_adamw_bit_for_bit() {
        for weight_decay in [0.0, 0.01] {
            let fused = FusedAdamW::new(0.9, 0.999, 1e-8, weight_decay);
            let burn = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).with_weight_decay(weight_decay).build();
            let (mut p_fused, mut p_burn) = (random([37, 29], 1), random([37, 29], 1));
            let (mut s_fused, mut s_burn) = (None, None);
            for step in 0..5 {
                let grad = match step % 4 {
                    0 => random([29, 37], step + 2).transpose(),
                    1 => random([37, 29], step + 2),
                    2 => random([37, 29], step + 2).flip([0]),
                    _ => random([40, 29], step + 2).slice([2..39, 0..29]),
                };
                let lr = 1e-3 * (step + 1) as f64;
                let before = buffer(&p_fused);
                (p_fused, s_fused) = fused.step(lr, p_fused, grad.clone(), s_fused);
                assert_eq!(buffer(&p_fused), before, "θ updated in its own buffer");
                (p_burn, s_burn) = burn.step(lr, p_burn, grad, s_burn);
                let (f, b) = (s_fused.as_ref().unwrap(), s_burn.as_ref().unwrap());
                assert_eq!(f.momentum.time, b.momentum.time);
                assert_eq!(values(&f.momentum.moment_1), values(&b.momentum.moment_1), "m at step {step}");
                assert_eq!(values(&f.momentum.moment_2), values(&b.momentum.moment_2), "v at step {step}");
                assert_eq!(values(&p_fused), values(&p_burn), "θ at step {step}, λ {weight_decay}");
            }
            assert_ne!(values(&p_fused), values(&random::<2>([37, 29], 1)), "the steps moved θ");
        }
    }

    /// Off the fused path (f64 parameters) the step is burn's.
    #[test]
    fn other_dtypes_take_burns_step() {
        let (fused, burn) = (FusedAdamW::new(0.9, 0.99, 1e-6, 0.0), AdamWConfig::new().with_beta_2(0.99).with_epsilon(1e-6).with_weight_decay(0.0).build());
        let p = random([7, 5], 3).cast(DType::F64);
        let g = random([7, 5], 4).cast(DType::F64);
        let (a, _) = fused.step(0.1, p.clone(), g.clone(), None);
        let (b, _) = burn.step(0.1, p, g, None);
        assert_eq!(a.dtype(), DType::F64);
        assert_eq!(a.to_data().try_to_vec::<f64>().unwrap(), b.to_data().try_to_vec::<f64>().unwrap());
    }

    /// A whole model under `ModuleOptimizer` (autodiff parameters, some without gradients)
    /// takes the same 3 steps as with burn's AdamW, and its saved state resumes in burn's.
    #[test]
    fn a_model_trains_as_with_burns_adamw_and_its_state_loads_there() {
        let device = Device::flex().autodiff();
        let config = ModelConfig::tiny(Architecture::Qwen3);
        let step = |model: CausalLm, optim: &mut ModuleOptimizer, k: usize| {
            let lp = completion_logprobs(&model, &[vec![1, 2, 3 + k as u32]], &[vec![4, 5]], 0, 1.0);
            let grads = GradientsParams::from_grads(lp.sum().backward(), &model);
            optim.step(1e-2, model, grads)
        };
        let mut fused = ModuleOptimizer::from(FusedAdamW::new(0.9, 0.999, 1e-8, 0.1));
        let mut burn = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.1).init();
        let (mut a, mut b) = (CausalLm::random(&config, 5, &device), CausalLm::random(&config, 5, &device));
        let mut start = Vec::new();
        a.visit(&mut Collect(&mut start));
        for k in 0..3 {
            (a, b) = (step(a, &mut fused, k), step(b, &mut burn, k));
        }
        let same = |x: &CausalLm, y: &CausalLm| {
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            x.visit(&mut Collect(&mut xs));
            y.visit(&mut Collect(&mut ys));
            assert!(!xs.is_empty());
            assert_eq!(xs, ys);
        };
        same(&a, &b);
        let mut now = Vec::new();
        a.visit(&mut Collect(&mut now));
        assert!(now.iter().zip(&start).filter(|(x, y)| x != y).count() > start.len() / 2, "most parameters moved");
        // the fused optimiser's state, loaded into burn's, continues as burn's own
        let mut resumed = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.1).init().from_bytes(fused.into_bytes().unwrap()).unwrap();
        let (a, b) = (step(a, &mut resumed, 3), step(b, &mut burn, 3));
        same(&a, &b);
    }

    /// Every float parameter's values, in visit order.
    struct Collect<'a>(&'a mut Vec<Vec<f32>>);

    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0.push(values(&param.val()));
        }
    }
}
