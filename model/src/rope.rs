//! Rotary position embedding, rotate_half (NeoX/HF) convention, tables built per call.
//!
//! inv_freq_i = θ^(−2i/hd) for i < hd/2; angle(p, i) = p · inv_freq_i; cos and sin tables are
//! `[cos(angle), cos(angle)]` over the head dim. Arithmetic follows HF (f32 inv_freq and angles).

use burn::tensor::{Device, Tensor, TensorData};

/// cos and sin for the given positions: each `[batch, 1, seq, head_dim]`.
pub fn tables(positions: &[Vec<usize>], head_dim: usize, theta: f64, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
    let mut cos = Vec::with_capacity(b * t * head_dim);
    let mut sin = Vec::with_capacity(b * t * head_dim);
    for row in positions {
        for &p in row {
            let angles: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
    }
    let shape = [b, 1, t, head_dim];
    (Tensor::from_data(TensorData::new(cos, shape), device), Tensor::from_data(TensorData::new(sin, shape), device))
}

/// x · cos + rotate_half(x) · sin, with rotate_half([x1, x2]) = [−x2, x1]. x: `[batch, heads, seq, hd]`.
pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}
