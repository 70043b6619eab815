//! The Linear layer as an autodiff operation on `Autodiff<Flex>` (see [`super`]).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, Shape, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_flex::FlexTensor;

use super::transpose::transpose;
use crate::tensors::downcast as cast;

type Ad = Autodiff<Flex>;

/// `x W + b` for rows `x` [N, d_in] when `B` is `Autodiff<Flex>` and every operand is f32; the input
/// back otherwise.
pub(super) fn apply<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Tensor<B, 1>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    if [x.dtype(), w.dtype(), b.dtype()] != [DType::F32; 3] {
        return Err(x);
    }
    const SAME: &str = "the layer's parameters are on the input's backend";
    let x = cast::<Tensor<B, 2>, Tensor<Ad, 2>>(x)?;
    let w = cast::<_, Tensor<Ad, 2>>(w).unwrap_or_else(|_| unreachable!("{SAME}"));
    let b = cast::<_, Tensor<Ad, 1>>(b).unwrap_or_else(|_| unreachable!("{SAME}"));
    let y = autodiff(
        x.into_primitive().tensor(),
        w.into_primitive().tensor(),
        b.into_primitive().tensor(),
    );
    cast(Tensor::<Ad, 2>::from_primitive(TensorPrimitive::Float(y)))
        .map_err(|_| unreachable!("B is Autodiff<Flex>"))
}

/// `dy W^T` with `W^T` copied contiguous first.
fn input_grad(dy: FlexTensor, w: FlexTensor) -> FlexTensor {
    let [d_in, d_out] = w.shape().dims::<2>();
    // Contiguous from offset 0 and covering its buffer (flex's `to_contiguous`).
    let w = w.to_contiguous();
    let wt = transpose(&w.storage::<f32>()[..d_in * d_out], d_in, d_out);
    Flex::float_matmul(
        dy,
        FlexTensor::from_data(TensorData::new(wt, [d_out, d_in])),
    )
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// The checkpointed input (kept when the weight needs a gradient) and weight (kept when the
    /// input does).
    type State = (Option<NodeId>, Option<NodeId>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy: FlexTensor = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state) = ops.state;
        if let (Some(node), Some(id)) = (node_x, w_state) {
            let w: FlexTensor = ckpt.retrieve_node_output(id);
            grads.register::<Flex>(node.id, input_grad(dy.clone(), w));
        }
        if let (Some(node), Some(id)) = (node_w, x_state) {
            let x: FlexTensor = ckpt.retrieve_node_output(id);
            // x^T as a view: gemm packs that operand's layout at full speed.
            let xt = Flex::float_swap_dims(x, 0, 1);
            grads.register::<Flex>(node.id, Flex::float_matmul(xt, dy.clone()));
        }
        if let Some(node) = node_b {
            let d_out = dy.shape().dims::<2>()[1];
            let db = Flex::float_reshape(Flex::float_sum_dim(dy, 0), Shape::new([d_out]));
            grads.register::<Flex>(node.id, db);
        }
    }
}

fn autodiff(x: FloatTensor<Ad>, w: FloatTensor<Ad>, b: FloatTensor<Ad>) -> FloatTensor<Ad> {
    let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
    match LinearBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            // The input is needed only for the weight's gradient, and the weight for the input's.
            let x_state = w_tracked.then(|| prep.checkpoint(&x));
            let w_state = x_tracked.then(|| prep.checkpoint(&w));
            let y = Flex::linear(x.primitive, w.primitive, Some(b.primitive));
            prep.finish((x_state, w_state), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(Flex::linear(x.primitive, w.primitive, Some(b.primitive)))
        }
    }
}
