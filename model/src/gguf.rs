//! GGUF v3 reader (llama.cpp's container): metadata, tensor index and dequantisation to f32.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 metadata count; metadata as
//! (string key, u32 type, value); tensor infos as (string name, u32 n_dims, u64 dims, u32 type,
//! u64 offset); data from the next multiple of `general.alignment` (default 32). Dims are
//! `[ne0, ne1]` with ne0 contiguous, so a 2-D weight is row-major `[ne1, ne0]` = HF `[out, in]`.
//! Every read is bounds-checked: a truncated or corrupt file is an error, never a panic.

use half::{bf16, f16};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A GGUF problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct GgufError {
    /// The GGUF file.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type, widened.
    Int(i64),
    /// u64 values above i64::MAX.
    UInt(u64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) if *i >= 0 => Some(*i as u64),
            Value::UInt(u) => Some(*u),
            _ => None,
        }
    }
    /// As a float (integers widen).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Tensor element types this reader dequantises (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 0: f32.
    F32,
    /// 1: IEEE half.
    F16,
    /// 2: blocks of 32, `d: f16, qs: u8[16]`, w = d·(q − 8).
    Q4_0,
    /// 3: blocks of 32, `d: f16, m: f16, qs: u8[16]`, w = d·q + m.
    Q4_1,
    /// 8: blocks of 32, `d: f16, qs: i8[32]`, w = d·q.
    Q8_0,
    /// 30: bfloat16.
    BF16,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// (weights per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
        }
    }
}

/// One tensor's entry in the index.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// GGUF dims, ne0 first (contiguous).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Byte range in the file.
    pub range: std::ops::Range<usize>,
}

impl TensorInfo {
    /// Shape in row-major order (PyTorch/HF), i.e. the GGUF dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|d| *d as usize).collect()
    }
}

/// An opened GGUF file.
pub struct Gguf {
    path: PathBuf,
    map: Mmap,
    /// Metadata key/value pairs.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gguf({}, {} tensors)", self.path.display(), self.tensors.len())
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated: {what} needs {n} bytes at offset {}", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| format!("{what}: length {n} too large"))?;
        String::from_utf8(self.take(n, what)?.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, String> {
        let le = |b: &[u8]| -> [u8; 8] {
            let mut out = [0u8; 8];
            out[..b.len()].copy_from_slice(b);
            out
        };
        Ok(match ty {
            0 => Value::Int(self.take(1, "u8")?[0] as i64),
            1 => Value::Int(self.take(1, "i8")?[0] as i8 as i64),
            2 => Value::Int(u16::from_le_bytes(self.take(2, "u16")?.try_into().expect("2")) as i64),
            3 => Value::Int(i16::from_le_bytes(self.take(2, "i16")?.try_into().expect("2")) as i64),
            4 => Value::Int(self.u32("u32")? as i64),
            5 => Value::Int(self.u32("i32")? as i32 as i64),
            6 => Value::Float(f32::from_le_bytes(self.take(4, "f32")?.try_into().expect("4")) as f64),
            7 => Value::Bool(self.take(1, "bool")?[0] != 0),
            8 => Value::Str(self.string("string value")?),
            9 => {
                if depth > 2 {
                    return Err("arrays nested too deep".into());
                }
                let elem = self.u32("array type")?;
                let n = self.u64("array length")?;
                if n > (self.bytes.len() - self.pos) as u64 {
                    return Err(format!("array of {n} items is longer than the file"));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => {
                let v = u64::from_le_bytes(le(self.take(8, "u64")?));
                i64::try_from(v).map(Value::Int).unwrap_or(Value::UInt(v))
            }
            11 => Value::Int(i64::from_le_bytes(le(self.take(8, "i64")?))),
            12 => Value::Float(f64::from_le_bytes(le(self.take(8, "f64")?))),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

impl Gguf {
    /// Opens and indexes a GGUF file (memory-mapped; tensors are read on demand).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let err = |message: String| GgufError { file: path.to_path_buf(), message };
        let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only and the model cache is not modified while in use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(format!("cannot map: {e}")))?;
        let (metadata, tensors) = Self::index(&map).map_err(err)?;
        Ok(Self { path: path.to_path_buf(), map, metadata, tensors })
    }

    #[allow(clippy::type_complexity)]
    fn index(bytes: &[u8]) -> Result<(BTreeMap<String, Value>, BTreeMap<String, TensorInfo>), String> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.take(4, "magic")?;
        if magic != b"GGUF" {
            return Err(format!("not a GGUF file (magic {magic:?}, expected \"GGUF\")"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(format!("GGUF version {version} is not supported (2 or 3)"));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, 0).map_err(|e| format!("metadata {key}: {e}"))?;
            metadata.insert(key, v);
        }
        let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32).max(1) as usize;
        let mut infos = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32("tensor rank")?;
            if n_dims == 0 || n_dims > 4 {
                return Err(format!("tensor {name}: rank {n_dims} is not 1..4"));
            }
            let dims: Vec<u64> = (0..n_dims).map(|_| c.u64("tensor dim")).collect::<Result<_, _>>()?;
            let ty_id = c.u32("tensor type")?;
            let offset = c.u64("tensor offset")?;
            infos.push((name, dims, ty_id, offset));
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, ty_id, offset) in infos {
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| format!("tensor {name}: ggml type {ty_id} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1)"))?;
            let count = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).ok_or_else(|| format!("tensor {name}: shape overflows"))?;
            let (per_block, block_bytes) = ty.block();
            if dims[0] % per_block as u64 != 0 {
                return Err(format!("tensor {name}: first dim {} is not a multiple of the {per_block}-weight block", dims[0]));
            }
            let len = (count / per_block as u64).checked_mul(block_bytes as u64).ok_or_else(|| format!("tensor {name}: too large"))?;
            let start = (data_start as u64).checked_add(offset);
            let end = start.and_then(|s| s.checked_add(len)).filter(|e| *e <= bytes.len() as u64);
            let end = end.ok_or_else(|| format!("truncated: tensor {name} ({len} bytes at data offset {offset}) runs past the end of the file"))?;
            let start = (data_start as u64 + offset) as usize;
            tensors.insert(name, TensorInfo { dims, ty, range: start..end as usize });
        }
        Ok((metadata, tensors))
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| self.error(format!("missing metadata key {key}")))
    }

    /// An error about this file.
    pub fn error(&self, message: String) -> GgufError {
        GgufError { file: self.path.clone(), message }
    }

    /// Dequantises a tensor to f32, row-major in [`TensorInfo::shape`] order.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let info = self.tensors.get(name).ok_or_else(|| self.error(format!("missing tensor {name}")))?;
        Ok((dequantize(info.ty, &self.map[info.range.clone()]), info.shape()))
    }
}

/// Dequantises raw ggml data of type `ty` (whole blocks) to f32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Vec<f32> {
    let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    match ty {
        GgmlType::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        GgmlType::F16 => raw.chunks_exact(2).map(h).collect(),
        GgmlType::BF16 => raw.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        GgmlType::Q8_0 => raw
            .chunks_exact(34)
            .flat_map(|b| {
                let d = h(&b[0..2]);
                b[2..34].iter().map(move |q| d * (*q as i8) as f32)
            })
            .collect(),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let block = if ty == GgmlType::Q4_0 { 18 } else { 20 };
            let mut out = Vec::with_capacity(raw.len() / block * 32);
            for b in raw.chunks_exact(block) {
                let d = h(&b[0..2]);
                let (m, qs, bias) = if ty == GgmlType::Q4_0 { (0.0, &b[2..18], 8.0) } else { (h(&b[2..4]), &b[4..20], 0.0) };
                // Byte j holds weight j (low nibble) and weight j + 16 (high nibble).
                out.extend(qs.iter().map(|q| d * ((q & 0x0f) as f32 - bias) + m));
                out.extend(qs.iter().map(|q| d * ((q >> 4) as f32 - bias) + m));
            }
            out
        }
    }
}

/// Undoes llama.cpp's Q/K row permutation for `llama` GGUFs, so that rotate_half RoPE applies.
///
/// `w` is row-major `[n_head · hd, in]`; rows are reordered as
/// `w.reshape(n_head, hd/2, 2, in).swapaxes(1, 2).reshape(out, in)`.
pub fn unpermute_rows(w: &[f32], n_head: usize, in_dim: usize) -> Vec<f32> {
    move_rows(w, n_head, in_dim, false)
}

/// llama.cpp's Q/K row permutation, the inverse of [`unpermute_rows`] (what its converter does
/// to HF weights): `w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in)`.
pub fn permute_rows(w: &[f32], n_head: usize, in_dim: usize) -> Vec<f32> {
    move_rows(w, n_head, in_dim, true)
}

/// Moves each head's row (h, i, j) of llama.cpp's interleaved layout to (h, j, i) of HF's
/// half-split one, or back when `to_llama_cpp`.
fn move_rows(w: &[f32], n_head: usize, in_dim: usize, to_llama_cpp: bool) -> Vec<f32> {
    let out_dim = w.len() / in_dim;
    let hd = out_dim / n_head;
    let mut r = vec![0.0; w.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let interleaved = h * hd + 2 * i + j;
                let half_split = h * hd + j * (hd / 2) + i;
                let (src, dst) = if to_llama_cpp { (half_split, interleaved) } else { (interleaved, half_split) };
                r[dst * in_dim..(dst + 1) * in_dim].copy_from_slice(&w[src * in_dim..(src + 1) * in_dim]);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_and_q8_0_blocks_hand_worked() {
        // Q4_1: d = 0.5, m = -1, nibbles: byte j = (j+16 high) | (j low) with low = j % 16, high = 15 - j % 16.
        let mut b = Vec::new();
        b.extend(f16::from_f32(0.5).to_le_bytes());
        b.extend(f16::from_f32(-1.0).to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let w = dequantize(GgmlType::Q4_1, &b);
        assert_eq!(w.len(), 32);
        assert_eq!(w[0], -1.0);
        assert_eq!(w[15], 0.5 * 15.0 - 1.0);
        assert_eq!(w[16], 0.5 * 15.0 - 1.0);
        assert_eq!(w[31], -1.0);
        // Q4_0 with the same nibbles: d·(q − 8).
        let mut b0 = f16::from_f32(2.0).to_le_bytes().to_vec();
        b0.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let w0 = dequantize(GgmlType::Q4_0, &b0);
        assert_eq!((w0[0], w0[15], w0[16]), (-16.0, 14.0, 14.0));
        // Q8_0: d = 0.25, qs = -16..16.
        let mut q = f16::from_f32(0.25).to_le_bytes().to_vec();
        q.extend((-16i8..16).map(|x| x as u8));
        let w = dequantize(GgmlType::Q8_0, &q);
        assert_eq!((w[0], w[16], w[31]), (-4.0, 0.0, 3.75));
    }

    #[test]
    fn unpermute_matches_the_reshape_swapaxes_formula() {
        // One head of hd = 4, in = 1: stored rows [a0 b0 a1 b1] -> [a0 a1 b0 b1].
        assert_eq!(unpermute_rows(&[0.0, 1.0, 2.0, 3.0], 1, 1), [0.0, 2.0, 1.0, 3.0]);
        let w: Vec<f32> = (0..16).map(|x| x as f32).collect(); // 2 heads, hd 4, in 2
        assert_eq!(unpermute_rows(&w, 2, 2), [0., 1., 4., 5., 2., 3., 6., 7., 8., 9., 12., 13., 10., 11., 14., 15.]);
    }

    #[test]
    fn permute_is_the_inverse_of_unpermute() {
        // Stored rows [a0 b0 a1 b1] <- HF rows [a0 a1 b0 b1], and both ways round on 3 heads.
        assert_eq!(permute_rows(&[0.0, 2.0, 1.0, 3.0], 1, 1), [0.0, 1.0, 2.0, 3.0]);
        let w: Vec<f32> = (0..3 * 8 * 5).map(|x| x as f32).collect();
        assert_eq!(unpermute_rows(&permute_rows(&w, 3, 5), 3, 5), w);
        assert_eq!(permute_rows(&unpermute_rows(&w, 3, 5), 3, 5), w);
    }
}
