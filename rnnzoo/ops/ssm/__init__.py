"""State-space sequence ops. Each returns ``(output, final_state)``; see each module for layouts and modes.

    s4d             diagonal structured state space (Gu et al. 2022), FFT convolution or recurrence    (s4d.py)
    selective_scan  Mamba's input-selective scan (Gu & Dao 2023)                                      (selective.py)
    ssd             Mamba-2's scalar-decay state space, chunked by state-space duality (Dao & Gu 2024) (selective.py)
"""
from rnnzoo.ops.ssm.s4d import s4d, s4d_kernel
from rnnzoo.ops.ssm.selective import selective_scan, ssd

__all__ = ["s4d", "s4d_kernel", "selective_scan", "ssd"]
