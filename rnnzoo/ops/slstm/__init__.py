"""The sLSTM of xLSTM (Beck et al. 2024). A nonlinear recurrence (h feeds the gates), so the loop in naive.py is
both the reference and the fast form; the caller hoists the input projection out of the loop."""
from rnnzoo.ops.slstm.naive import SLSTMState, slstm, slstm_cell

__all__ = ["SLSTMState", "slstm", "slstm_cell"]
