"""Numeric tolerances of the suite, stated once. A test that compares numbers names the precision it
means; "auto" resolves per machine (``ctframe.runtime.precision``), and ``make test`` runs the precision-
sensitive tests again with ``$CTFRAME_NATIVE_BF16`` forced to the other answer than the CPU's own, so both
answers are checked everywhere.
"""

FP32_PROBABILITY_ATOL = 1e-6
"""Same fp32 computation through different code paths (batching, loaders): float rounding only."""

BF16_PROBABILITY_ATOL = 5e-2
"""bf16 autocast against fp32 after a few epochs of training on the toy set: bf16 keeps 8 bits of
mantissa (relative error ~4e-3 per operation), which compounds through training steps."""

BF16_FEATURE_RTOL = 5e-2
"""One bf16 forward pass of a backbone against fp32, relative to the feature scale."""

FP32_FOLDED_RTOL = 1e-5
"""The same fp32 model computed another way: BatchNorm folded into the convolution before it, a cached
or compiled forward. Each is the same arithmetic with its products and sums in another order (~1e-7
relative per layer); relative to the output's scale, and to the losses of a few toy epochs."""

DDP_LOSS_RTOL = 1e-5
"""Two processes with half a batch each against one process with the whole batch (fp32): the same
arithmetic summed in a different order. DDP all-reduces each process's gradient of its part and the
validation sums are added over processes, so every sum is grouped differently (float32 addition is not
associative: ~1e-7 relative per sum), and RMSprop carries the difference through a few steps."""

DDP_PROBABILITY_ATOL = 1e-5
"""The same, for predicted probabilities after training (weights differ by rounding only)."""

BF16_STORE_RTOL = 2e-2
"""fp32 training on activations stored in bf16 (8 mantissa bits: ~4e-3 relative rounding of each value)
against fp32 activations, compared on the losses of a few toy epochs."""
