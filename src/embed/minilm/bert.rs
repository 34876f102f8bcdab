//! The BERT encoder behind the `minilm` provider: embeddings, then self-attention and
//! feed-forward layers, on candle tensors, with the dense layers multiplied by rten-gemm and
//! GELU and softmax computed by rten-vecmath.
//!
//! candle-transformers' `BertModel` computes the same function. It spent most of its time
//! outside the matrix products: candle's GELU calls a scalar `erf` per element and its softmax
//! a scalar `exp`, and its own matrix products ran at about half the speed of rten-gemm's
//! AVX-512 kernels with the weights packed once at load. On the bench rows, one thread, batch
//! 32, this encoder makes about 2.2 times as many rows per second. Its vectors differ from
//! sentence-transformers' by less than 1e-5 per value (the tests hold them to its reference
//! vectors); rten-vecmath's `erf` is an approximation good to about 1e-6.
//!
//! The attention products (queries by keys, weights by values) stay on candle's `matmul`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use rten_gemm::{BiasVector, GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix};
use rten_simd::{SimdOp, SimdUnaryOp};
use rten_tensor::NdTensorView;
use rten_vecmath::{Gelu, Softmax};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` this encoder reads; the rest are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl Config {
    /// The shapes this encoder can run: GELU layers and a hidden size the heads divide.
    pub fn check(&self) -> candle_core::Result<()> {
        if self.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act is {:?}; only \"gelu\" is supported",
                self.hidden_act
            );
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        Ok(())
    }
}

/// `x·Wᵀ + b` over the last dimension of `x`, with `W` packed once for rten-gemm, and
/// optionally GELU applied to the result in place.
struct Dense {
    weights: PackedBMatrix<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    gelu: bool,
}

impl Dense {
    /// `weight` is `[outputs, inputs]`, as PyTorch stores a linear layer.
    fn new(weight: &Tensor, bias: &Tensor, gelu: bool) -> candle_core::Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let bias = bias.to_vec1::<f32>()?;
        if bias.len() != outputs {
            candle_core::bail!("bias has {} values for {outputs} outputs", bias.len());
        }
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        let view = NdTensorView::from_data([outputs, inputs], &weight[..]);
        let weights = GemmExecutor::<f32>::default().prepack_b(view.transposed());
        Ok(Self {
            weights,
            bias,
            inputs,
            outputs,
            gelu,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

/// The contiguous f32 values of a CPU tensor.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(all) = storage else {
        candle_core::bail!("expected f32 values, found {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "bert-dense"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(storage, layout)?;
        let mut dims = layout.shape().dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.inputs => *last = self.outputs,
            _ => candle_core::bail!("dense layer of {} inputs given {dims:?}", self.inputs),
        }
        let rows = x.len() / self.inputs;
        let mut out = vec![0f32; rows * self.outputs];
        // The executor is made per call: it is not `Send`, and choosing its kernel is cheap
        // (the CPU's features are detected once per process). It picks the same kernel the
        // weights were packed for.
        GemmExecutor::<f32>::default()
            .gemm(
                &mut out,
                GemmInputA::Unpacked(NdTensorView::from_data([rows, self.inputs], x)),
                GemmInputB::Packed(&self.weights),
                GemmOptions {
                    bias: Some(BiasVector::Row(&self.bias)),
                    ..GemmOptions::default()
                },
            )
            .map_err(|e| candle_core::Error::Msg(format!("dense layer: {e}")))?;
        if self.gelu {
            Gelu {}.map_mut(&mut out);
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// Softmax over the last dimension.
struct RowSoftmax;

impl CustomOp1 for RowSoftmax {
    fn name(&self) -> &'static str {
        "bert-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut out = values(storage, layout)?.to_vec();
        let width = layout.shape().dims().last().copied().unwrap_or(0);
        if width > 0 {
            for row in out.chunks_exact_mut(width) {
                Softmax::new_mut(row).dispatch();
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

struct Layer {
    /// Query, key and value in one product: `[q | k | v]` along the outputs.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    /// The intermediate layer, GELU included.
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

pub struct Bert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

fn dense(vb: VarBuilder, outputs: usize, inputs: usize, gelu: bool) -> candle_core::Result<Dense> {
    Dense::new(
        &vb.get((outputs, inputs), "weight")?,
        &vb.get(outputs, "bias")?,
        gelu,
    )
}

impl Bert {
    /// Build the encoder from a BertModel's weights (names without a `bert.` prefix, as
    /// sentence-transformers saves them).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        config.check()?;
        let hidden = config.hidden_size;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(hidden, config.layer_norm_eps, vb);
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let attention = vb.pp("attention.self");
                let part = |name: &str| {
                    let vb = attention.pp(name);
                    Ok::<_, candle_core::Error>((
                        vb.get((hidden, hidden), "weight")?,
                        vb.get(hidden, "bias")?,
                    ))
                };
                let (q, k, v) = (part("query")?, part("key")?, part("value")?);
                Ok(Layer {
                    qkv: Dense::new(
                        &Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
                        &Tensor::cat(&[&q.1, &k.1, &v.1], 0)?,
                        false,
                    )?,
                    attention_out: dense(vb.pp("attention.output.dense"), hidden, hidden, false)?,
                    attention_norm: norm(vb.pp("attention.output.LayerNorm"))?,
                    up: dense(
                        vb.pp("intermediate.dense"),
                        config.intermediate_size,
                        hidden,
                        true,
                    )?,
                    down: dense(
                        vb.pp("output.dense"),
                        hidden,
                        config.intermediate_size,
                        false,
                    )?,
                    output_norm: norm(vb.pp("output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let vb = vb.pp("embeddings");
        Ok(Self {
            words: candle_nn::embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                vb.pp("token_type_embeddings"),
            )?,
            embeddings_norm: norm(vb.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            hidden,
        })
    }

    /// Token vectors `[batch, tokens, hidden]` of `ids`, `type_ids` and `mask` (each
    /// `[batch, tokens]`, u32; `mask` is 1 for a real token and 0 for padding, which no token
    /// attends to). `pause` is called before each layer: it may block, to let other work go
    /// first.
    pub fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
        pause: fn(),
    ) -> candle_core::Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        let positions = Tensor::arange(0u32, tokens as u32, ids.device())?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .add(&self.token_types.forward(type_ids)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;

        // Added to the attention scores: 0 for real tokens, far below any score for padding.
        let padding =
            ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, tokens))?;
        let head_size = self.hidden / self.heads;
        let scale = 1.0 / (head_size as f64).sqrt();
        let split = |t: Tensor| {
            t.reshape((batch, tokens, self.heads, head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            pause();
            let qkv = layer.qkv.forward(&x)?;
            let q = split(qkv.narrow(D::Minus1, 0, self.hidden)?)?;
            let k = split(qkv.narrow(D::Minus1, self.hidden, self.hidden)?)?;
            let v = split(qkv.narrow(D::Minus1, 2 * self.hidden, self.hidden)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&padding)?;
            let weights = scores.apply_op1_no_bwd(&RowSoftmax)?;
            let context =
                weights
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((batch, tokens, self.hidden))?;
            let attended = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let up = layer.up.forward(&attended)?;
            x = layer
                .output_norm
                .forward(&(layer.down.forward(&up)? + &attended)?)?;
        }
        Ok(x)
    }
}
