//! A network planned on the GPU: its graph with memory, the input and output values, and, when
//! planned with it, the VJP. The UNet and the MPE networks are both this plus their own extra
//! inputs (the UNet's timesteps), so their runs deref to it.

use equireg_gpu::{Recorder, Tensor};

use crate::error::{NnError, Result};
use crate::graph::{PlannedGraph, ValueId};

pub struct PlannedModel {
    graph: PlannedGraph,
    x: ValueId,
    out: ValueId,
    /// Nodes [0, forward_nodes) are the forward; the rest the VJP, if planned.
    forward_nodes: usize,
    /// (cotangent of the output, gradient of the input) when planned with the VJP.
    vjp: Option<(ValueId, ValueId)>,
}

impl PlannedModel {
    pub(crate) fn new(
        graph: PlannedGraph,
        x: ValueId,
        out: ValueId,
        forward_nodes: usize,
        vjp: Option<(ValueId, ValueId)>,
    ) -> Self {
        Self {
            graph,
            x,
            out,
            forward_nodes,
            vjp,
        }
    }

    /// The planned tensor of one value of the graph.
    pub(crate) fn tensor(&self, v: ValueId) -> &Tensor {
        self.graph.tensor(v)
    }

    /// [N, in_channels, H, W]
    pub fn input(&self) -> &Tensor {
        self.graph.tensor(self.x)
    }

    /// The network's output (its shape is the network's: see UNetRun and MpeRun).
    pub fn output(&self) -> &Tensor {
        self.graph.tensor(self.out)
    }

    pub fn planned_bytes(&self) -> u64 {
        self.graph.planned_bytes()
    }

    /// Records the forward with the network's parameters.
    pub(crate) fn record_forward_with(&self, rec: &mut Recorder, params: &[Tensor]) -> Result<()> {
        self.graph.record_range(rec, params, 0..self.forward_nodes)
    }

    fn vjp_ids(&self) -> Result<(ValueId, ValueId)> {
        self.vjp.ok_or_else(|| {
            NnError::Input("this run was planned without the VJP (use plan_with_vjp)".into())
        })
    }

    /// The cotangent of the output (shaped like it): write it before `record_vjp`.
    pub fn cotangent(&self) -> Result<&Tensor> {
        Ok(self.graph.tensor(self.vjp_ids()?.0))
    }

    /// The gradient of sum(output * cotangent) with respect to the input, after `record_vjp`.
    pub fn input_grad(&self) -> Result<&Tensor> {
        Ok(self.graph.tensor(self.vjp_ids()?.1))
    }

    /// Records the VJP with the network's parameters; the forward must have been recorded (in
    /// this or an earlier submit) with the input it is the gradient at.
    pub(crate) fn record_vjp_with(&self, rec: &mut Recorder, params: &[Tensor]) -> Result<()> {
        self.vjp_ids()?;
        self.graph.record_range(
            rec,
            params,
            self.forward_nodes..self.graph.graph().nodes().len(),
        )
    }

    /// FLOPs of one forward (multiply-adds count 2): convolutions, linears, matmuls.
    pub fn flops(&self) -> f64 {
        self.graph.graph().flops_of(0..self.forward_nodes)
    }

    /// FLOPs of the VJP alone (0 when planned without it).
    pub fn vjp_flops(&self) -> f64 {
        let n = self.graph.graph().nodes().len();
        self.graph.graph().flops_of(self.forward_nodes..n)
    }
}
