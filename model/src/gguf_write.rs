//! GGUF v3 writer, the inverse of [`crate::gguf`]'s reader: metadata and tensors laid out as
//! llama.cpp reads them, with f32 → f16 / bf16 / Q8_0 encoding.
//!
//! Written by hand: the crates that write GGUF bring their own tensor and metadata types
//! (or a whole framework, as candle does) for what is ~150 lines beside our reader, which
//! tests every file this writes.

use crate::gguf::GgmlType;
use half::{bf16, f16};
use std::io::Write;

/// Data section alignment (`general.alignment`'s default, which the writer never changes).
const ALIGNMENT: usize = 32;

/// A metadata value with the GGUF type llama.cpp expects for its key.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7.
    Bool(bool),
    /// Type 8.
    Str(String),
    /// Type 9 of type 8.
    Strings(Vec<String>),
    /// Type 9 of type 5.
    I32s(Vec<i32>),
}

/// One tensor to write: its HF-order shape `[rows, cols]` (or `[n]`) and f32 values, stored
/// as `ty`.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// llama.cpp name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Row-major shape, outermost first (written reversed, as GGUF dims).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
    /// Storage type: F32, F16, BF16 or Q8_0.
    pub ty: GgmlType,
}

fn ggml_type_id(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 8,
        GgmlType::BF16 => 30,
    }
}

/// Encodes f32 values as `ty`: f16 and bf16 round to nearest; Q8_0 takes blocks of 32 with
/// d = max|x| / 127 and q = round(x / d). The length must be a whole number of blocks.
pub fn encode(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, String> {
    Ok(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => {
            if !values.len().is_multiple_of(32) {
                return Err(format!("Q8_0 needs a multiple of 32 values, got {}", values.len()));
            }
            let mut out = Vec::with_capacity(values.len() / 32 * 34);
            for block in values.chunks_exact(32) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8));
            }
            out
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => return Err(format!("{ty:?} is read, not written")),
    })
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U32(v) => {
            out.extend(4u32.to_le_bytes());
            out.extend(v.to_le_bytes());
        }
        MetaValue::I32(v) => {
            out.extend(5u32.to_le_bytes());
            out.extend(v.to_le_bytes());
        }
        MetaValue::F32(v) => {
            out.extend(6u32.to_le_bytes());
            out.extend(v.to_le_bytes());
        }
        MetaValue::Bool(v) => {
            out.extend(7u32.to_le_bytes());
            out.push(u8::from(*v));
        }
        MetaValue::Str(s) => {
            out.extend(8u32.to_le_bytes());
            put_string(out, s);
        }
        MetaValue::Strings(items) => {
            out.extend(9u32.to_le_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| put_string(out, s));
        }
        MetaValue::I32s(items) => {
            out.extend(9u32.to_le_bytes());
            out.extend(5u32.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
    }
}

/// The bytes of a GGUF v3 file holding `metadata` (in order) and `tensors`.
pub fn to_bytes(metadata: &[(String, MetaValue)], tensors: &[TensorEntry]) -> Result<Vec<u8>, String> {
    let mut header = Vec::new();
    header.extend(b"GGUF");
    header.extend(3u32.to_le_bytes());
    header.extend((tensors.len() as u64).to_le_bytes());
    header.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut header, key);
        put_value(&mut header, value);
    }
    let mut data = Vec::new();
    for t in tensors {
        let count: usize = t.shape.iter().product();
        if count != t.values.len() {
            return Err(format!("tensor {}: shape {:?} holds {count} values, got {}", t.name, t.shape, t.values.len()));
        }
        let inner = *t.shape.last().unwrap_or(&0);
        if t.ty == GgmlType::Q8_0 && !inner.is_multiple_of(32) {
            return Err(format!("tensor {}: Q8_0 needs rows of a multiple of 32 values, got {inner}", t.name));
        }
        let bytes = encode(t.ty, &t.values).map_err(|e| format!("tensor {}: {e}", t.name))?;
        data.resize(data.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        put_string(&mut header, &t.name);
        header.extend((t.shape.len() as u32).to_le_bytes());
        t.shape.iter().rev().for_each(|d| header.extend((*d as u64).to_le_bytes()));
        header.extend(ggml_type_id(t.ty).to_le_bytes());
        header.extend((data.len() as u64).to_le_bytes());
        data.extend(bytes);
    }
    header.resize(header.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
    header.extend(data);
    Ok(header)
}

/// Writes [`to_bytes`] to `w`.
pub fn write(w: &mut impl Write, metadata: &[(String, MetaValue)], tensors: &[TensorEntry]) -> std::io::Result<()> {
    let bytes = to_bytes(metadata, tensors).map_err(std::io::Error::other)?;
    w.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{Gguf, Value, dequantize};

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let values: Vec<f32> = (0..64 * 3).map(|i| ((i as f32) * 0.37).sin()).collect();
        let tensors = vec![
            TensorEntry { name: "a".into(), shape: vec![3, 64], values: values.clone(), ty: GgmlType::F32 },
            TensorEntry { name: "b".into(), shape: vec![5], values: vec![1.0, -2.0, 0.5, 3.0, 0.0], ty: GgmlType::F32 },
            TensorEntry { name: "c".into(), shape: vec![3, 64], values: values.clone(), ty: GgmlType::F16 },
            TensorEntry { name: "d".into(), shape: vec![3, 64], values: values.clone(), ty: GgmlType::BF16 },
            TensorEntry { name: "e".into(), shape: vec![3, 64], values: values.clone(), ty: GgmlType::Q8_0 },
        ];
        let metadata = vec![
            ("general.architecture".to_string(), MetaValue::Str("llama".into())),
            ("llama.block_count".to_string(), MetaValue::U32(2)),
            ("llama.rope.freq_base".to_string(), MetaValue::F32(1e5)),
            ("x.flag".to_string(), MetaValue::Bool(true)),
            ("x.neg".to_string(), MetaValue::I32(-3)),
            ("tokenizer.ggml.tokens".to_string(), MetaValue::Strings(vec!["<a>".into(), "ħ".into()])),
            ("tokenizer.ggml.token_type".to_string(), MetaValue::I32s(vec![3, 1])),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        write(&mut std::fs::File::create(&path).unwrap(), &metadata, &tensors).unwrap();
        let g = Gguf::open(&path).unwrap();
        assert_eq!(g.get("general.architecture").unwrap().as_str(), Some("llama"));
        assert_eq!(g.get("llama.block_count").unwrap().as_u64(), Some(2));
        assert_eq!(g.get("llama.rope.freq_base").unwrap().as_f64(), Some(1e5));
        assert_eq!(g.get("x.flag").unwrap(), &Value::Bool(true));
        assert_eq!(g.get("x.neg").unwrap(), &Value::Int(-3));
        assert_eq!(g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap(), &[Value::Str("<a>".into()), Value::Str("ħ".into())]);
        assert_eq!(g.get("tokenizer.ggml.token_type").unwrap().as_array().unwrap(), &[Value::Int(3), Value::Int(1)]);
        assert_eq!(g.dequantize("a").unwrap(), (values.clone(), vec![3, 64]));
        assert_eq!(g.dequantize("b").unwrap().0, [1.0, -2.0, 0.5, 3.0, 0.0]);
        for (name, tolerance) in [("c", 1e-3), ("d", 8e-3), ("e", 1.0 / 127.0)] {
            let (got, shape) = g.dequantize(name).unwrap();
            assert_eq!(shape, [3, 64]);
            let worst = got.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{name}: max error {worst}");
        }
        assert!(g.tensors.values().all(|t| t.range.start % ALIGNMENT == 0));
    }

    #[test]
    fn q8_0_encodes_a_block_as_llama_cpp_does() {
        // amax 127 → d = 1, so q = round(x) exactly; the block dequantises to the rounded input.
        let mut block: Vec<f32> = (0..32).map(|i| i as f32 * 3.7 - 50.2).collect();
        block[5] = 127.0;
        let bytes = encode(GgmlType::Q8_0, &block).unwrap();
        assert_eq!(bytes.len(), 34);
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(), 1.0);
        let back = dequantize(GgmlType::Q8_0, &bytes);
        assert_eq!(back, block.iter().map(|v| v.round()).collect::<Vec<_>>());
        // An all-zero block has d = 0 and decodes to zeros.
        assert_eq!(dequantize(GgmlType::Q8_0, &encode(GgmlType::Q8_0, &[0.0; 32]).unwrap()), [0.0; 32]);
        assert!(encode(GgmlType::Q8_0, &[1.0; 31]).is_err());
    }
}
