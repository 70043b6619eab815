//! The kernels on flex's tensors, and the autodiff operation around them.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_flex::FlexTensor;

use super::Op;
use super::kernels::{self, Wanted};
use crate::tensors::downcast as cast;

type Ad = Autodiff<Flex>;

/// The operation on backend `B` when it is flex (with or without autodiff) and every operand is f32;
/// the input back otherwise.
pub(super) fn apply<B: Backend>(
    op: Op,
    x: Tensor<B, 4>,
    w: Tensor<B, 4>,
    b: Tensor<B, 1>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if [x.dtype(), w.dtype(), b.dtype()] != [DType::F32; 3] {
        return Err(x);
    }
    const SAME: &str = "the layer's parameters are on the input's backend";
    let x = match cast::<Tensor<B, 4>, Tensor<Ad, 4>>(x) {
        Ok(x) => {
            let w = cast::<_, Tensor<Ad, 4>>(w).unwrap_or_else(|_| unreachable!("{SAME}"));
            let b = cast::<_, Tensor<Ad, 1>>(b).unwrap_or_else(|_| unreachable!("{SAME}"));
            let y = autodiff(
                op,
                x.into_primitive().tensor(),
                w.into_primitive().tensor(),
                b.into_primitive().tensor(),
            );
            return cast(Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(y)))
                .map_err(|_| unreachable!("B is Autodiff<Flex>"));
        }
        Err(x) => x,
    };
    match cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x) {
        Ok(x) => {
            let w = cast::<_, Tensor<Flex, 4>>(w).unwrap_or_else(|_| unreachable!("{SAME}"));
            let b = cast::<_, Tensor<Flex, 1>>(b).unwrap_or_else(|_| unreachable!("{SAME}"));
            let y = forward(
                op,
                x.into_primitive().tensor(),
                &w.into_primitive().tensor(),
                &b.into_primitive().tensor(),
            );
            cast(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(y)))
                .map_err(|_| unreachable!("B is Flex"))
        }
        Err(x) => Err(x),
    }
}

/// A contiguous copy's values (flex's `to_contiguous` starts at offset 0 and covers its buffer).
fn values(t: &FlexTensor) -> FlexTensor {
    t.clone().to_contiguous()
}

fn slice(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[..t.shape().num_elements()]
}

fn tensor(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn forward(op: Op, x: FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (x, w, b) = (x.to_contiguous(), values(w), values(b));
    let n = x.shape().dims::<4>()[0];
    let y = match op {
        Op::Conv { geometry, c_out } => {
            kernels::conv(&geometry, c_out, slice(&x), slice(&w), Some(slice(&b)))
        }
        Op::Transpose { geometry, c_in } => {
            kernels::conv_transpose(&geometry, c_in, slice(&x), slice(&w), Some(slice(&b)))
        }
    };
    tensor(y, op.output_shape(n).into())
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = (NodeId, NodeId, Op);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, op) = ops.state;
        let x: FlexTensor = ckpt.retrieve_node_output(x_state);
        let w: FlexTensor = ckpt.retrieve_node_output(w_state);
        let (x, w, dy) = (values(&x), values(&w), values(&dy));
        let want = Wanted {
            x: node_x.is_some(),
            w: node_w.is_some(),
            bias: node_b.is_some(),
        };
        let g = match op {
            Op::Conv { geometry, c_out } => {
                kernels::conv_backward(&geometry, c_out, slice(&x), slice(&w), slice(&dy), want)
            }
            Op::Transpose { geometry, c_in } => kernels::conv_transpose_backward(
                &geometry,
                c_in,
                slice(&x),
                slice(&w),
                slice(&dy),
                want,
            ),
        };
        if let (Some(node), Some(v)) = (node_x, g.x) {
            grads.register::<Flex>(node.id, tensor(v, x.shape()));
        }
        if let (Some(node), Some(v)) = (node_w, g.w) {
            grads.register::<Flex>(node.id, tensor(v, w.shape()));
        }
        if let (Some(node), Some(v)) = (node_b, g.bias) {
            let len = v.len();
            grads.register::<Flex>(node.id, tensor(v, [len].into()));
        }
    }
}

fn autodiff(op: Op, x: FloatTensor<Ad>, w: FloatTensor<Ad>, b: FloatTensor<Ad>) -> FloatTensor<Ad> {
    match ConvBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&w);
            let y = forward(op, x.primitive, &w.primitive, &b.primitive);
            prep.finish((x_state, w_state, op), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(op, x.primitive, &w.primitive, &b.primitive))
        }
    }
}
