//! x · Wᵀ for a few rows of x (decoding) on the CPU. A general gemm packs W into panels on every
//! call, which for 8 rows of x costs more than the product itself. Here W `[n, k]` streams from
//! memory once, each of its rows meeting every row of x while it sits in L1, so a decode step
//! runs at the speed of memory instead of the speed of packing (`selfemo bench model`).

use rayon::prelude::*;

/// Rows of W per parallel task (a multiple of the kernel's 3-row tile).
const TASK_ROWS: usize = 96;

/// Below this many weights (n · k) the product runs on one thread: dispatch would cost more.
const PARALLEL_MIN: usize = 1 << 18;

/// out `[m, n]` = x `[m, k]` · Wᵀ, for W `[n, k]`; all row-major.
pub fn x_wt(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    x_wt_many(x, m, &[(w, n)], k).pop().expect("one product")
}

/// [`x_wt`] for several weights `(W, n)` that share x (q/k/v, gate/up), in one parallel pass
/// over all their row blocks.
pub fn x_wt_many(x: &[f32], m: usize, weights: &[(&[f32], usize)], k: usize) -> Vec<Vec<f32>> {
    assert_eq!(x.len(), m * k, "x must be [m, k]");
    let mut outs: Vec<Vec<f32>> = weights
        .iter()
        .map(|(w, n)| {
            assert_eq!(w.len(), n * k, "W must be [n, k]");
            vec![0.0; m * n]
        })
        .collect();
    if m == 0 || k == 0 {
        return outs;
    }
    // a task: a block of W's rows, and the matching columns of every output row
    let mut tasks: Vec<(&[f32], Vec<&mut [f32]>)> = Vec::new();
    for ((w, n), out) in weights.iter().zip(&mut outs).filter(|((_, n), _)| *n > 0) {
        let mut columns: Vec<_> = out.chunks_mut(*n).map(|row| row.chunks_mut(TASK_ROWS)).collect();
        for rows in w.chunks(TASK_ROWS * k) {
            tasks.push((rows, columns.iter_mut().map(|c| c.next().expect("a column block per row block")).collect()));
        }
    }
    let run = |(w, mut out): (&[f32], Vec<&mut [f32]>)| block(x, w, k, &mut out);
    if weights.iter().map(|(_, n)| n * k).sum::<usize>() >= PARALLEL_MIN {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
    outs
}

/// One task: `out[r][j]` = x_r · W_j for a block of W's rows, with the fastest kernel this
/// CPU runs.
fn block(x: &[f32], w: &[f32], k: usize, out: &mut [&mut [f32]]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { avx2::block(x, w, k, out) };
        return;
    }
    portable_block(x, w, k, out);
}

/// The kernel for CPUs without AVX2: one dot product per output.
fn portable_block(x: &[f32], w: &[f32], k: usize, out: &mut [&mut [f32]]) {
    for (j, row) in w.chunks_exact(k).enumerate() {
        for (out, xr) in out.iter_mut().zip(x.chunks_exact(k)) {
            out[j] = dot(xr, row);
        }
    }
}

/// Σ a·b over eight interleaved partial sums, which the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Rows of W per register tile.
    const NB: usize = 3;
    /// Rows of x per register tile (NB · RB = 12 accumulators of the 16 registers).
    const RB: usize = 4;
    /// How far ahead of the loads W is prefetched, in floats (8 KiB: several rows ahead).
    const PREFETCH: usize = 2048;

    /// `out[r][j]` = x_r · W_j, tile by tile: NB rows of W against RB rows of x over the whole
    /// k, 8 lanes at a time, then the lane sums and the k % 8 tail.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. Slices: x `[m, k]`, w `[rows, k]`, out m rows of `rows`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // register tiles read best as indexed loops
    pub unsafe fn block(x: &[f32], w: &[f32], k: usize, out: &mut [&mut [f32]]) {
        let (m, rows) = (out.len(), w.len() / k);
        assert!(x.len() == m * k && out.iter().all(|o| o.len() == rows));
        let k8 = k / 8 * 8;
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        for n in (0..rows).step_by(NB) {
            let nb = (rows - n).min(NB);
            for r in (0..m).step_by(RB) {
                let rb = (m - r).min(RB);
                let mut acc = [[_mm256_setzero_ps(); NB]; RB];
                for c in (0..k8).step_by(8) {
                    let mut wv = [_mm256_setzero_ps(); NB];
                    for j in 0..nb {
                        // SAFETY: row n + j < rows and c + 8 <= k, inside w. The prefetch is
                        // a hint that never faults; its address is computed without `add`.
                        unsafe {
                            let at = wp.add((n + j) * k + c);
                            if c % 16 == 0 {
                                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH).cast());
                            }
                            wv[j] = _mm256_loadu_ps(at);
                        }
                    }
                    for i in 0..rb {
                        // SAFETY: row r + i < m and c + 8 <= k, inside x.
                        let xv = unsafe { _mm256_loadu_ps(xp.add((r + i) * k + c)) };
                        for j in 0..NB {
                            acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
                        }
                    }
                }
                for i in 0..rb {
                    let xr = &x[(r + i) * k..(r + i + 1) * k];
                    for j in 0..nb {
                        let wr = &w[(n + j) * k..(n + j + 1) * k];
                        let tail: f32 = xr[k8..].iter().zip(&wr[k8..]).map(|(a, b)| a * b).sum();
                        out[r + i][n + j] = lane_sum(acc[i][j]) + tail;
                    }
                }
            }
        }
    }

    /// The sum of a register's eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn lane_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
        let s = _mm_hadd_ps(s, s);
        _mm_cvtss_f32(_mm_hadd_ps(s, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..n {
            for r in 0..m {
                out[r * n + i] = (0..k).map(|c| x[r * k + c] as f64 * w[i * k + c] as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any m, n, k (tails of the 3 × 4 tile and of the 8 lanes, several tasks) match the
        /// plain triple loop.
        #[test]
        fn matches_the_plain_product(m in 1usize..18, n in 1usize..400, k in 1usize..80, seed in 0u64..1000) {
            let val = |i: usize| (((i as u64 * 2654435761 + seed * 97) % 2001) as f32 - 1000.0) / 1000.0;
            let x: Vec<f32> = (0..m * k).map(val).collect();
            let w: Vec<f32> = (0..n * k).map(|i| val(i + 7919)).collect();
            let got = x_wt(&x, m, &w, n, k);
            for (g, e) in got.iter().zip(naive(&x, m, &w, n, k)) {
                prop_assert!((g - e).abs() <= 1e-5 * (1.0 + k as f32), "{g} vs {e}");
            }
        }
    }

    /// Several weights in one pass give each weight's own product.
    #[test]
    fn many_weights_equal_one_at_a_time() {
        let (m, k) = (5, 40);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 13 % 41) as f32 - 20.0) / 20.0).collect();
        let ws: Vec<(Vec<f32>, usize)> = [300, 7, 1000].iter().map(|&n| ((0..n * k).map(|i| ((i * 7 % 53) as f32 - 26.0) / 26.0).collect(), n)).collect();
        let weights: Vec<(&[f32], usize)> = ws.iter().map(|(w, n)| (w.as_slice(), *n)).collect();
        let many = x_wt_many(&x, m, &weights, k);
        for (got, (w, n)) in many.iter().zip(&weights) {
            assert_eq!(got, &x_wt(&x, m, w, *n, k));
        }
    }

    /// A product large enough to run in parallel tasks matches too, and so does the
    /// portable kernel.
    #[test]
    fn parallel_and_portable_kernels_match() {
        let (m, n, k) = (8, 1000, 576);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 17 % 89) as f32 - 44.0) / 45.0).collect();
        assert!(n * k >= PARALLEL_MIN);
        let expect = naive(&x, m, &w, n, k);
        let mut portable = vec![0.0; m * n];
        portable_block(&x, &w, k, &mut portable.chunks_mut(n).collect::<Vec<_>>());
        for got in [x_wt(&x, m, &w, n, k), portable] {
            let worst = got.iter().zip(&expect).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "worst error {worst}");
        }
    }
}
