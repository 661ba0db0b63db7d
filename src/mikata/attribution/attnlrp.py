"""AttnLRP (Achtibat et al. 2024, "AttnLRP: Attention-Aware Layer-wise Relevance Propagation for
Transformers"): LRP through softmax attention, layer norm and the bilinear matrix products.

Relevance travels as the backward signal, as in zennit: each operation's backward receives the
relevance of its output and returns the relevance of its inputs. Linear layers and convolutions are
zennit modules with zennit's epsilon rule (batch norm folded by zennit's canonizer). Everything a
transformer computes between them is a function call, so a ``TorchFunctionMode`` active during the
forward routes those calls through rules written here as autograd functions:

- softmax ``s = softmax(x)``: ``R_x = x * (R - s * sum(R))`` (the paper's Proposition 3.1: the softmax
  linearized at the input, its "bias" absorbing the rest);
- layer norm: the division by the standard deviation is held constant (the identity rule on the
  normalization), and the remaining linear map ``gamma * (x - mean(x)) / std + beta`` takes the epsilon
  rule ``R_x = x * J^T (R / y)``;
- matrix product of two activations (``q @ k^T``, ``attn @ v``) and element-wise product of two
  activations: the uniform rule, the epsilon rule of the product's terms split half to each factor;
- a product with a constant (``q * scale``, layer scale ``x * gamma``) or a division by one: identity;
- an addition (residual branches, position embeddings): the epsilon rule ``R_a = a * R / (a + b)``, a
  constant addend (a position embedding, an attention bias) absorbing its share like a bias;
- element-wise activations (GELU, SiLU, ...): identity.

Reshapes, concatenations, token selection and means only route values; their gradient passes the
relevance on unchanged in total. Fused attention kernels never show the attention matrix, so they are
turned off for the call (``mikata.models.attention.unfused``) and flags restored; a fused kernel still
called (``nn.MultiheadAttention``) is refused. As for LRP, the first image's relevance is checked for
conservation: with biases left out, the pixels' relevance plus what the softmax rules absorbed and
what reached the constant tokens (class and register tokens, joined to the patches by a concatenation)
must be 1, the seed; where it is not, ``LRPUnsupportedError``.

Example:
    >>> maps, info = attnlrp(handle, x, ids)      # maps: T x (N, C, H, W)    # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mikata.attribution.lrp import CONSERVATION_TOL, LRPUnsupportedError, _import_zennit
from mikata.hooks import preserved
from mikata.models.handle import ModelHandle

EPS = 1e-6


def _stab(z: torch.Tensor) -> torch.Tensor:
    """``z`` moved away from zero by ``EPS`` in its own sign (zennit's epsilon stabilizer)."""
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


@dataclass
class _Ledger:
    """What one pass's rules need to share: bias-free mode, relevance the softmax rules absorbed."""

    zero_bias: bool = False
    absorbed: float = 0.0
    constants: list = field(default_factory=list)  # constant tokens joined to the stream (class, register)


def _fit(r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Relevance of a broadcast operand summed back to its own shape."""
    return r.sum_to_size(like.shape) if r.shape != like.shape else r


class _Add(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, ledger):
        ctx.save_for_backward(a, b)
        ctx.ledger = ledger
        return a + b

    @staticmethod
    def backward(ctx, r):
        a, b = ctx.saved_tensors
        wa, wb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.ledger.zero_bias and wa != wb:  # a constant addend is a bias: left out, all to the other
            return (r if wa else None), (r if wb else None), None
        z = _stab(a + b)
        return (_fit(a * r / z, a) if wa else None), (_fit(b * r / z, b) if wb else None), None


class _Bilinear(torch.autograd.Function):
    """``a @ b`` (``matmul``) or ``a * b`` of two activations: uniform rule, half of each term to each factor."""

    @staticmethod
    def forward(ctx, a, b, matmul):
        ctx.save_for_backward(a, b)
        ctx.matmul = matmul
        return a @ b if matmul else a * b

    @staticmethod
    def backward(ctx, r):
        a, b = ctx.saved_tensors
        z = a @ b if ctx.matmul else a * b
        q = r / (2 * _stab(z))
        if ctx.matmul:
            return _fit(a * (q @ b.transpose(-1, -2)), a), _fit(b * (a.transpose(-1, -2) @ q), b), None
        return _fit(a * b * q, a), _fit(a * b * q, b), None


class _Identity(torch.autograd.Function):
    """``fn(x)`` forward, relevance passed unchanged (element-wise activations, scaling by a constant)."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, r):
        return r.sum_to_size(ctx.shape) if r.shape != ctx.shape else r, None


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, ledger):
        s = torch.softmax(x, dim)
        ctx.save_for_backward(x, s)
        ctx.dim, ctx.ledger = dim, ledger
        return s

    @staticmethod
    def backward(ctx, r):
        x, s = ctx.saved_tensors
        out = x * (r - s * r.sum(ctx.dim, keepdim=True))
        ctx.ledger.absorbed += float(r.double().sum() - out.double().sum())
        return out, None, None


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shape, weight, bias, eps, ledger):
        ctx.save_for_backward(x)
        ctx.args = (shape, weight, bias, eps, ledger)
        return F.layer_norm(x, shape, weight, bias, eps)

    @staticmethod
    def backward(ctx, r):
        (x,) = ctx.saved_tensors
        shape, weight, bias, eps, ledger = ctx.args
        dims = tuple(range(-len(shape), 0))
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            centred = xd - xd.mean(dims, keepdim=True)
            std = (x.var(dims, unbiased=False, keepdim=True) + eps).sqrt()  # held constant: the identity rule
            y = centred / std
            if weight is not None:
                y = y * weight.detach()
            if bias is not None and not ledger.zero_bias:
                y = y + bias.detach()
            (g,) = torch.autograd.grad(y, xd, r / _stab(y.detach()))
        return x * g, None, None, None, None, None


_ADD = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_ADD_INPLACE = {torch.Tensor.add_, torch.Tensor.__iadd__}
_MUL = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__}
_MUL_INPLACE = {torch.Tensor.mul_, torch.Tensor.__imul__}
_DIV = {torch.div, torch.Tensor.div, torch.Tensor.__truediv__, torch.Tensor.__itruediv__, torch.Tensor.div_}
_MATMUL = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}
_SOFTMAX = {torch.softmax, torch.Tensor.softmax, F.softmax}
_ELEMENTWISE = {F.gelu, F.silu, F.hardswish, F.mish, F.elu, F.relu, torch.relu, torch.Tensor.relu, F.relu6,
                F.hardtanh, F.hardsigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh,
                torch.Tensor.tanh, F.tanh, F.softplus, F.leaky_relu}
_FUSED = {F.scaled_dot_product_attention, F.multi_head_attention_forward}


def _graph(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


class _Rules(TorchFunctionMode):
    """While active (the forward), the calls AttnLRP has rules for run through them."""

    def __init__(self, ledger: _Ledger):
        super().__init__()
        self.ledger = ledger
        self.fused: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if func in _FUSED:
            self.fused = getattr(func, "__name__", str(func))
            return func(*args, **kwargs)
        a = args[0] if args else None
        b = args[1] if len(args) > 1 else kwargs.get("other")
        if func in _ADD or func in _ADD_INPLACE:
            if not (_graph(a) or _graph(b)) or not isinstance(b, torch.Tensor) or kwargs.get("alpha", 1) != 1:
                return func(*args, **kwargs)
            out = _Add.apply(a, b, self.ledger)
            return a.copy_(out) if func in _ADD_INPLACE else out
        if func in _MUL or func in _MUL_INPLACE:
            if _graph(a) and _graph(b):
                out = _Bilinear.apply(a, b, False)
            elif _graph(a) or _graph(b):  # scaling by a constant: identity
                x = a if _graph(a) else b
                out = _Identity.apply(x, func(*args, **kwargs) if func in _MUL else a * b)
            else:
                return func(*args, **kwargs)
            return a.copy_(out) if func in _MUL_INPLACE else out
        if func in _DIV and _graph(a) and not _graph(b):
            y = func(*args, **kwargs) if func not in (torch.Tensor.__itruediv__, torch.Tensor.div_) else a / b
            out = _Identity.apply(a, y)
            return a.copy_(out) if func in (torch.Tensor.__itruediv__, torch.Tensor.div_) else out
        if func is torch.cat and self.ledger.zero_bias and isinstance(a, (list, tuple)) and any(map(_graph, a)):
            # the probe counts what reaches a constant token (class, register): a leaf of its own takes it
            pieces = []
            for t in a:
                if isinstance(t, torch.Tensor) and not t.requires_grad and t.is_floating_point():
                    t = t.detach().requires_grad_(True)
                    self.ledger.constants.append(t)
                pieces.append(t)
            return func(pieces, *args[1:], **kwargs)
        if func in _MATMUL and _graph(a) and _graph(b):
            return _Bilinear.apply(a, b, True)
        if func in _SOFTMAX and _graph(a):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim is None:
                return func(*args, **kwargs)
            return _Softmax.apply(a, dim, self.ledger).to(kwargs.get("dtype") or a.dtype)
        if func is F.layer_norm and _graph(a):
            shape = tuple(args[1] if len(args) > 1 else kwargs["normalized_shape"])
            weight = args[2] if len(args) > 2 else kwargs.get("weight")
            bias = args[3] if len(args) > 3 else kwargs.get("bias")
            eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
            return _LayerNorm.apply(a, shape, weight, bias, eps, self.ledger)
        if func in _ELEMENTWISE and _graph(a):
            if kwargs.get("inplace") or (len(args) > 1 and args[-1] is True):
                return func(*args, **kwargs)  # in place: left to the gradient (rare in transformers)
            return _Identity.apply(a, func(*args, **kwargs))
        return func(*args, **kwargs)


def _composite(zero_bias: bool):
    """zennit's epsilon rule on every linear layer and convolution, batch norm folded where it can be."""
    _import_zennit()
    from zennit import composites, rules, types
    from zennit.canonizers import SequentialMergeBatchNorm

    zero = {"zero_params": "bias"} if zero_bias else {}
    layer_map = [(types.BatchNorm, rules.Pass()), (types.Convolution, rules.Epsilon(epsilon=EPS, **zero)),
                 (torch.nn.Linear, rules.Epsilon(epsilon=EPS, **zero))]
    return composites.LayerMapComposite(layer_map=layer_map, canonizers=[SequentialMergeBatchNorm()])


def _refuse(handle: ModelHandle, why: str) -> LRPUnsupportedError:
    return LRPUnsupportedError(f"AttnLRP cannot run on {type(handle.net).__name__}: {why}. The model is unchanged; "
                               "use attention-rollout, grad-x-input or integrated-gradients instead")


def _pass(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, zero_bias: bool) -> tuple[list[torch.Tensor], float]:
    """One forward with the rules, one backward per target rank: relevance at the input, softmax-absorbed total."""
    from mikata.models.attention import unfused

    ledger = _Ledger(zero_bias)
    with ExitStack() as stack:
        stack.enter_context(unfused(handle.net))
        model = stack.enter_context(_composite(zero_bias).context(handle.model))
        rules = _Rules(ledger)
        xin = x.detach().requires_grad_(True)
        with rules:
            logits = model(xin)  # (N, K)
        if rules.fused:
            raise _refuse(handle, f"its attention runs as one fused call ({rules.fused}) whose attention "
                                  "matrix the rules cannot reach")
        picked = logits.gather(1, ids)  # (N, T)
        out = []
        for k in range(ids.shape[1]):
            g, *tokens = torch.autograd.grad(picked[:, k].sum(), [xin, *ledger.constants],
                                             retain_graph=k < ids.shape[1] - 1, allow_unused=True)
            out.append(g.detach())
            ledger.absorbed += sum(float(t.double().sum()) for t in tokens if t is not None)
    return out, ledger.absorbed


def attnlrp(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, check: bool = True) -> tuple[list[torch.Tensor], dict]:
    """Per target rank: AttnLRP relevance ``(N, C, H, W)`` of the target logit (seeded with 1, as ``lrp``).

    Info: ``conservation``, the first image's bias-free relevance at the pixels plus what the softmax
    rules and the constant tokens (class, register) absorbed: 1 where every operation has a rule; and
    ``absorbed``, those two.
    """
    from mikata.models.attention import NoAttentionError, attention_sites

    if not attention_sites(handle.net):  # as the rollouts refuse a CNN
        raise NoAttentionError(f"AttnLRP cannot run on {type(handle.net).__name__}: it has no attention layer (timm "
                               "attention or nn.MultiheadAttention); AttnLRP is LRP for transformers - use lrp on a CNN")
    with preserved(handle.net, values=True):
        for p in handle.net.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            total = float("nan")
            absorbed = 0.0
            if check:
                (probe,), absorbed = _pass(handle, x[:1], ids[:1, :1], zero_bias=True)
                total = float(probe.double().sum()) + absorbed
                if not abs(total - 1.0) <= CONSERVATION_TOL:  # NaN fails too
                    raise _refuse(handle, f"relevance is not conserved (with the biases left out, the pixels' "
                                          f"relevance plus what the softmax rules and the class token absorbed must be 1 and is "
                                          f"{total:.4g}): the network computes something these rules do not cover")
            maps, _ = _pass(handle, x, ids, zero_bias=False)
    if not all(torch.isfinite(m).all() for m in maps):
        raise _refuse(handle, "relevance is not finite")
    return maps, {"conservation": total, "absorbed": absorbed}


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``)."""
    return attnlrp(ctx.handle, ctx.x, ctx.ids, **ctx.options)
