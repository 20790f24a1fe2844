"""Run float inputs through a board: quantize as the golden model does, send each frame
over the UART (:mod:`boards.protocol`), dequantize the replies.

The output equals ``hwconv golden``'s for the same model and input, frame for frame,
when the board runs that model: :func:`run` first asks the board for its input and
output sizes and its model fingerprint and refuses a board that runs another model.
"""

from __future__ import annotations

import numpy as np

from hwconv import compiler

from . import DEFAULT_BAUD, protocol

__all__ = ["run", "check_board"]


def check_board(info, qnet):
    """Refuse a board whose identify reply does not match ``qnet``."""
    n_in = int(np.prod(qnet.input_shape))
    n_out = int(np.prod(qnet.output_shape))
    want = protocol.fingerprint(qnet)
    if (info.in_bytes, info.out_bytes) != (n_in, n_out):
        raise protocol.ProtocolError(
            f"the board takes {info.in_bytes} input bytes and returns {info.out_bytes}; "
            f"the model has {n_in} and {n_out}: the bitstream is for another model")
    if info.fingerprint != want:
        raise protocol.ProtocolError(
            f"the board runs a model with fingerprint {info.fingerprint:08x}, this model's "
            f"is {want:08x}: the bitstream is for another model (or other quantization)")


def run(model, x, port, *, baud=DEFAULT_BAUD, timeout=2.0, retries=0, calibration=None):
    """Outputs (float32, model layout) of ``x`` (float, model layout, batch first)
    computed by the board on ``port``; returns ``(outputs, BoardInfo)``.

    Raises
    ------
    hwconv.errors.HwconvError
        Bad input shape, a board running another model, a rejected frame
        (:class:`~boards.protocol.BoardError`) or an untrustworthy reply
        (:class:`~boards.protocol.ProtocolError`).
    """
    if not isinstance(model, compiler.Model):
        model = compiler.load(model, calibration=calibration)
    q = model.qnet
    codes = model.quantize_input(np.asarray(x))
    din = q.input_q.dtype
    dout = q.output_q.dtype
    n_out = int(np.prod(q.output_shape))
    outs = []
    with protocol.BoardLink(port, baud, timeout=timeout) as link:
        info = link.identify()
        check_board(info, q)
        for k, frame in enumerate(codes):
            payload = link.run_frame(protocol.frame_bytes(frame, din), n_out,
                                     retries=retries, frame=k)
            outs.append(protocol.frame_codes(payload, dout, q.output_shape))
    y = np.stack(outs) if outs else np.zeros((0,) + tuple(q.output_shape), np.int64)
    return model.dequantize_output(y).astype(np.float32), info
