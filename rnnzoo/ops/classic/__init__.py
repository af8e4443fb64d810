"""The classic nonlinear recurrences: Elman, Jordan, LSTM, GRU, IndRNN.

Layout: x (B, T, D) (these cells have no heads), hidden h (B, H). Each op takes its weights in torch.nn's
layout and gate order, ``initial_state=None`` and ``mode``, and returns ``(output, final_state)``.
``mode="reference"`` is the loop over ``*_cell``; ``mode="fused"`` is torch's fused kernel (oneDNN on CPU,
cuDNN on GPU) where one exists; ``mode="auto"`` picks the fused kernel when it applies.
"""
