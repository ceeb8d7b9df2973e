//! Bad GGUF files give a clear error naming the file and the problem, never a panic.

use burn::tensor::Device;
use proptest::prelude::*;
use selfemo_model::gguf::Gguf;
use selfemo_model::weights::load_gguf;
use std::path::Path;

/// Writes a GGUF v3 in memory: string/u32/f32 metadata and f32 tensors (or raw typed ones).
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

impl Writer {
    fn new() -> Self {
        Self { kv: Vec::new(), n_kv: 0, infos: Vec::new(), data: Vec::new(), n_tensors: 0 }
    }
    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }
    fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    fn str(&mut self, key: &str, v: &str) -> &mut Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        Self::string(&mut self.kv, v);
        self.n_kv += 1;
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> &mut Self {
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }
    fn f32_tensor(&mut self, name: &str, dims: &[u64]) -> &mut Self {
        let n: u64 = dims.iter().product();
        let bytes: Vec<u8> = (0..n).flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes()).collect();
        self.tensor(name, dims, 0, &bytes)
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }
}

/// A valid one-layer llama GGUF (d 8, 2 heads, ffn 16, vocab 4), optionally with one tensor's dims changed.
fn tiny_llama(bad_dims_for: Option<&str>) -> Vec<u8> {
    let mut w = Writer::new();
    w.str("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .u32("llama.embedding_length", 8)
        .u32("llama.feed_forward_length", 16)
        .u32("llama.attention.head_count", 2)
        .u32("llama.attention.head_count_kv", 2)
        .u32("llama.vocab_size", 4);
    let shapes: [(&str, Vec<u64>); 10] = [
        ("token_embd.weight", vec![8, 4]),
        ("blk.0.attn_q.weight", vec![8, 8]),
        ("blk.0.attn_k.weight", vec![8, 8]),
        ("blk.0.attn_v.weight", vec![8, 8]),
        ("blk.0.attn_output.weight", vec![8, 8]),
        ("blk.0.ffn_gate.weight", vec![8, 16]),
        ("blk.0.ffn_up.weight", vec![8, 16]),
        ("blk.0.ffn_down.weight", vec![16, 8]),
        ("blk.0.attn_norm.weight", vec![8]),
        ("blk.0.ffn_norm.weight", vec![8]),
    ];
    for (name, dims) in shapes {
        let dims = if Some(name) == bad_dims_for { vec![dims[0], dims.get(1).copied().unwrap_or(1) + 1] } else { dims };
        w.f32_tensor(name, &dims);
    }
    w.f32_tensor("output_norm.weight", &[8]);
    w.bytes()
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn load_err(bytes: &[u8]) -> String {
    let (_dir, path) = write(bytes);
    load_gguf(&path, None, &Device::flex()).unwrap_err().to_string()
}

#[test]
fn a_valid_tiny_gguf_loads() {
    let (_dir, path) = write(&tiny_llama(None));
    let (model, config) = load_gguf(&path, None, &Device::flex()).unwrap();
    assert_eq!((config.hidden_size, config.num_hidden_layers, config.vocab_size), (8, 1, 4));
    assert!(config.tie_word_embeddings);
    assert_eq!(model.num_layers(), 1);
}

#[test]
fn wrong_magic() {
    let mut b = tiny_llama(None);
    b[..4].copy_from_slice(b"GGML");
    let e = load_err(&b);
    assert!(e.contains("m.gguf") && e.contains("not a GGUF file"), "{e}");
}

#[test]
fn truncated_file() {
    let b = tiny_llama(None);
    for cut in [3, 20, b.len() / 2, b.len() - 1] {
        let e = load_err(&b[..cut]);
        assert!(e.contains("m.gguf") && e.contains("truncated"), "cut {cut}: {e}");
    }
}

#[test]
fn unsupported_tensor_type() {
    let mut w = Writer::new();
    w.str("general.architecture", "llama").tensor("token_embd.weight", &[256, 1], 12, &[0u8; 144]); // Q4_K
    let e = load_err(&w.bytes());
    assert!(e.contains("token_embd.weight") && e.contains("ggml type 12 is not supported"), "{e}");
}

#[test]
fn wrong_shape() {
    let e = load_err(&tiny_llama(Some("blk.0.ffn_up.weight")));
    assert!(e.contains("m.gguf") && e.contains("model.layers.0.mlp.up_proj.weight has shape [17, 8], the config needs [16, 8]"), "{e}");
}

#[test]
fn missing_metadata() {
    let mut w = Writer::new();
    w.str("general.architecture", "llama");
    let e = load_err(&w.bytes());
    assert!(e.contains("missing metadata key llama.embedding_length"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_bytes_never_panic(cut in 0usize..2000, flip in proptest::collection::vec((0usize..2000, any::<u8>()), 0..8)) {
        let mut b = tiny_llama(None);
        for (i, v) in flip {
            let n = b.len();
            b[i % n] = v;
        }
        b.truncate(cut.max(4));
        let (_dir, path) = write(&b);
        if let Ok(g) = Gguf::open(Path::new(&path)) {
            for name in g.tensors.keys().cloned().collect::<Vec<_>>() {
                let _ = g.dequantize(&name);
            }
            let _ = load_gguf(&path, None, &Device::flex());
        }
    }
}
