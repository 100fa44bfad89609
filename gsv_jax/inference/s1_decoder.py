"""S1 sampling rules and the on-device decode loop.

Sampling (the original's ``sample`` + ``infer_panel_naive``/``infer_panel_batch_infer`` rules,
docs/s1.md "Sampling rules"), for each row and step ``idx``:

1. EOS ban: for ``idx < 11`` the EOS column is removed (set to -inf: it can be neither sampled nor
   the argmax).
2. Repetition penalty on every token already in the sequence, prompt included: a logit ``s``
   becomes ``s * rp`` if negative else ``s / rp``.  The original does this in place, so the
   EOS-by-argmax check below sees penalised logits.
3. ``argmax`` of the penalised logits (for the stop rule).
4. Top-p (only if ``top_p < 1``): sort descending, drop entries whose cumulative probability is
   ``> top_p`` except the first.
5. Temperature ``max(T, 1e-5)``; 6. top-k: logits strictly below the k-th largest -> -inf.
7. ``token = argmax(softmax / q)`` with ``q ~ Exp(1)`` (exponential race = multinomial draw).
8. Stop when the argmax or the token is EOS (the token is dropped), or after ``max_new_tokens``.

Decode loop: the batch is prefilled once at bucketed lengths (see ``S1Model.prefill`` for the
layout), the keys/values go into a preallocated cache ``[B, H, T_cache, hd]`` per layer.  Inside a chunk
the cache is read-only: each step's keys/values go to a small per-chunk buffer that attention also
reads, and the chunk is flushed into the cache with one ``dynamic_update_slice`` (so XLA never
copies the big cache per step).  Steps run as ``lax.scan`` chunks inside a
``lax.while_loop`` that stops once every row has ended.  Attention reads only a static window of
the cache (a power of two, first sized for the prefix plus ``first_window_tokens`` new tokens); the
host moves to the next window (one short host call per window, not per token).  Rows end independently; a finished row's outputs are frozen.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.inference import buckets, programs
from gsv_jax.models.s1 import S1Dims, S1Model
from gsv_jax.nn.positional import TABLE_LEN

EOS_BAN_STEPS = 11  # the original removes the EOS column while idx < 11


# ---------------------------------------------------------------------------------------------
# reduced-precision weights (docs/performance.md "S1 reduced precision")

PRECISIONS = ("fp32", "bf16", "int8")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Int8Kernel:
    """A weight-only int8 kernel: ``q`` int8 (the kernel's shape) times ``scale`` fp32 (1 along the
    input axes: one scale per output channel)."""

    q: Any
    scale: Any


def check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r}); "
                         "fp32 is the exact default")
    return precision


def _input_axes(name: str, ndim: int) -> tuple:
    # out_kernel [H, hd, D] reads over (H, hd); qkv_kernel [D, 3, H, hd] and Dense [in, out] over axis 0
    return (0, 1) if name == "out_kernel" else (0,)


def quantize_params(params, precision: str):
    """Host-side: fp32 parameter tree -> the stored tree for ``precision``.  Only matmul kernels
    (leaves named ``*kernel``) change; embeddings, biases and norms stay fp32.  fp32: unchanged."""
    check_precision(precision)
    if precision == "fp32":
        return params

    def one(path, a):
        name = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][-1]
        a = np.asarray(a, np.float32)
        if not name.endswith("kernel"):
            return a
        if precision == "bf16":
            return jnp.asarray(a, jnp.bfloat16)
        amax = np.max(np.abs(a), axis=_input_axes(name, a.ndim), keepdims=True)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        return Int8Kernel(np.clip(np.rint(a / scale), -127, 127).astype(np.int8), scale)

    return jax.tree_util.tree_map_with_path(one, params)


def dequantize(params):
    """The fp32 tree the model runs (traceable: call inside jit).  Identity for fp32 trees."""

    def one(a):
        if isinstance(a, Int8Kernel):
            return a.q.astype(jnp.float32) * a.scale
        return a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a

    return jax.tree.map(one, params, is_leaf=lambda a: isinstance(a, Int8Kernel))


def precision_of(params) -> str:
    leaves = jax.tree.leaves(params, is_leaf=lambda a: isinstance(a, Int8Kernel))
    if any(isinstance(a, Int8Kernel) for a in leaves):
        return "int8"
    return "bf16" if any(a.dtype == jnp.bfloat16 for a in leaves) else "fp32"


# ---------------------------------------------------------------------------------------------
# the sampling rules

def repetition_penalty(logits, seen, rp):
    """Penalise every token marked in ``seen`` [B, V] (bool): negative * rp, positive / rp."""
    pen = jnp.where(logits < 0, logits * rp, logits / rp)
    return jnp.where(seen, pen, logits)


def top_p_filter(logits, top_p):
    """Nucleus filter without the HF right-shift (the entry crossing ``top_p`` is removed too,
    unless it is the first); skipped (``lax.cond``) when ``top_p >= 1``.  The kept set is a prefix
    of the descending order, so it is applied as a threshold on the last kept value."""

    def nucleus(lg):
        sorted_logits = -jnp.sort(-lg, axis=-1)
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        n_keep = 1 + jnp.sum(cum[..., 1:] <= top_p, axis=-1, keepdims=True)
        pivot = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
        return jnp.where(lg < pivot, -jnp.inf, lg)

    return jax.lax.cond(top_p < 1.0, nucleus, lambda lg: lg, logits)


def first_argmax(x):
    """``jnp.argmax(x, -1)`` (the first index of the maximum) via ``lax.top_k``: XLA:CPU lowers
    argmax to a slow two-operand reduction (~30 us per 1025-wide row), top_k to a fast kernel."""
    return jax.lax.top_k(x, 1)[1][..., 0]


TOP_K_FAST = 128  # top_k up to this finds its pivot with lax.top_k; larger ones sort the whole row


def top_k_filter(logits, top_k):
    """Keep logits >= the k-th largest (ties at the pivot kept); ``top_k`` may be a traced int.
    The pivot is the k-th value of ``lax.top_k`` (static width TOP_K_FAST) when k fits, else of a
    full sort: the same value either way, but sorting 1025 logits per row cost ~0.3 ms per row and
    step on a CPU (most of a batched decode step of a small model)."""
    v = logits.shape[-1]
    k = jnp.clip(top_k, 1, v)
    k_fast = min(TOP_K_FAST, v)
    index = jnp.broadcast_to(k - 1, logits.shape[:-1])[..., None]

    def by_top_k(lg):
        return jnp.take_along_axis(jax.lax.top_k(lg, k_fast)[0], jnp.minimum(index, k_fast - 1), axis=-1)

    def by_sort(lg):
        return jnp.take_along_axis(-jnp.sort(-lg, axis=-1), index, axis=-1)

    pivot = jax.lax.cond(k <= k_fast, by_top_k, by_sort, logits)
    return jnp.where(logits < pivot, -jnp.inf, logits)


def sample(logits, seen, q, step, *, top_k, top_p, temperature, rp, eos: int, eos_ban_steps=EOS_BAN_STEPS):
    """One sampling step for every row.  logits fp32 [B, V]; seen bool [B, V]; q Exp(1) noise [B, V];
    step: the step index (scalar); EOS is removed while ``step < eos_ban_steps`` (the original: 11).  Returns (token [B], argmax of the penalised logits [B])."""
    logits = jnp.where((jnp.arange(logits.shape[-1]) == eos) & (step < eos_ban_steps), -jnp.inf, logits)
    logits = repetition_penalty(logits, seen, rp)
    greedy = first_argmax(logits)
    logits = top_p_filter(logits, top_p)
    logits = logits / jnp.maximum(temperature, 1e-5)
    logits = top_k_filter(logits, top_k)
    probs = jax.nn.softmax(logits, axis=-1)
    return first_argmax(probs / q).astype(jnp.int32), greedy.astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# decode state

@jax.tree_util.register_dataclass
@dataclasses.dataclass
class DecodeState:
    cache: Any  # tuple per layer of (k, v) [B, H, T, hd]
    valid: jax.Array  # bool [B, T]: real key columns
    logits: jax.Array  # fp32 [B, V]: logits for the current step
    seen: jax.Array  # bool [B, V]: tokens already in the sequence (prompt included)
    out: jax.Array  # int32 [B, T]: new tokens
    n_out: jax.Array  # int32 [B]
    done: jax.Array  # bool [B]
    eos_stop: jax.Array  # bool [B]
    step: jax.Array  # int32 scalar
    step_logits: Any  # fp32 [B, T, V] when recording, else None


@dataclasses.dataclass(frozen=True)
class DecodeResult:
    tokens: list  # per row: int32 new tokens (EOS removed)
    eos_stop: np.ndarray  # bool [B]: ended on EOS (else on max_new_tokens)
    step_logits: np.ndarray | None  # fp32 [B, steps, V] raw head output per step (if recorded)
    timings: dict


class S1Decoder:
    """Jitted prefill + chunked decode loop for one S1 architecture.

    Static shapes: phonemes are padded to a multiple of ``x_bucket``, prompts to a multiple of
    ``p_bucket``, the cache to a power of two >= prefill + max_new_tokens; the decode function
    depends only on (batch, cache length, attention window), so steady-state calls with lengths
    inside the buckets never recompile (``trace_counts`` counts traces = compilations).
    """

    def __init__(self, dims: S1Dims, *, chunk: int = 16, x_bucket: int = 32, p_bucket: int = 32,
                 min_window: int = 256, max_cache: int = 8192, first_window_tokens: int = 128,
                 dequant_in_step: bool | None = None):
        if x_bucket % chunk or p_bucket % chunk or min_window % chunk:
            raise ValueError("x_bucket, p_bucket and min_window must be multiples of chunk")
        self.dims = dims
        self.chunk, self.x_bucket, self.p_bucket = chunk, x_bucket, p_bucket
        self.min_window, self.max_cache = min_window, max_cache
        # the first attention window already covers this many new tokens, so that a typical
        # utterance (up to ~5 s of speech) decodes with one compiled window instead of two
        self.first_window_tokens = first_window_tokens
        # reduced-precision weights: dequantised once per decode call (XLA:CPU cannot fuse the
        # conversion into its matmuls, so per step it costs 3-4x the fp32 step) or inside every step
        # (accelerators, where the conversion fuses into the matmul operand and halves/quarters the bytes read)
        self.dequant_in_step = jax.default_backend() != "cpu" if dequant_in_step is None else bool(dequant_in_step)
        self.trace_counts: collections.Counter = collections.Counter()
        salt = f"{dims!r} chunk={chunk} dequant_in_step={self.dequant_in_step}"
        self._prefill = programs.cached_jit(self._prefill_impl, "s1_prefill", salt,
                                            static_argnames=("cache_len", "record"))
        self._decode = programs.cached_jit(self._decode_impl, "s1_decode", salt, static_argnames=("window", "record"),
                                           donate_argnums=(1,))

    def _model(self, cache_len: int) -> S1Model:
        return S1Model(self.dims, table_len=max(TABLE_LEN, cache_len))

    # -- jitted pieces -----------------------------------------------------------------------------
    def _prefill_impl(self, params, x, x_lens, bert, prompt, prompt_lens, *, cache_len: int, record: bool):
        self.trace_counts["prefill"] += 1
        model = self._model(cache_len)
        logits, kv, valid = model.apply({"params": dequantize(params)}, x, x_lens, bert, prompt, prompt_lens, method=S1Model.prefill)
        b, s = valid.shape
        pad = cache_len - s
        cache = tuple((jnp.pad(k, ((0, 0), (0, 0), (0, pad), (0, 0))), jnp.pad(v, ((0, 0), (0, 0), (0, pad), (0, 0))))
                      for k, v in kv)
        v_size = self.dims.vocab_size
        p_valid = jnp.arange(prompt.shape[1])[None, :] < prompt_lens[:, None]
        seen = jnp.zeros((b, v_size), bool).at[jnp.arange(b)[:, None], jnp.where(p_valid, prompt, v_size)].set(
            True, mode="drop")
        return DecodeState(
            cache=cache, valid=jnp.pad(valid, ((0, 0), (0, pad))), logits=logits, seen=seen,
            out=jnp.zeros((b, cache_len), jnp.int32), n_out=jnp.zeros((b,), jnp.int32),
            done=jnp.zeros((b,), bool), eos_stop=jnp.zeros((b,), bool), step=jnp.zeros((), jnp.int32),
            step_logits=jnp.zeros((b, cache_len, v_size), jnp.float32) if record else None)

    def _decode_impl(self, params, state: DecodeState, keys, prompt_lens, s_pad, max_new, stop, top_k, top_p,
                     temperature, rp, eos_ban_steps, *, window: int, record: bool):
        """Run steps until every row is done or ``step`` reaches ``stop`` (a multiple of chunk)."""
        self.trace_counts["decode"] += 1
        cache_len = state.valid.shape[1]
        model = self._model(cache_len)
        eos, v_size, c = self.dims.eos, self.dims.vocab_size, self.chunk
        b = state.valid.shape[0]
        rows = jnp.arange(b)
        call_params = params if self.dequant_in_step else dequantize(params)

        def chunk(st: DecodeState) -> DecodeState:
            cache, keep = st.cache, st.valid[:, :window]  # read-only inside the chunk
            start = st.step

            def one_step(carry, slot):
                sm, recent = carry
                idx = sm["step"]
                q = jax.vmap(lambda k: jax.random.exponential(jax.random.fold_in(k, idx), (v_size,)))(keys)
                tok, greedy = sample(sm["logits"], sm["seen"], q, idx, top_k=top_k, top_p=top_p,
                                     temperature=temperature, rp=rp, eos=eos, eos_ban_steps=eos_ban_steps)
                active = ~sm["done"]
                hit_eos = (tok == eos) | (greedy == eos)
                emit = active & ~hit_eos
                out = sm["out"].at[:, idx].set(jnp.where(emit, tok, sm["out"][:, idx]), mode="drop")
                seen = sm["seen"].at[rows, tok].set(sm["seen"][rows, tok] | emit)
                n_out = sm["n_out"] + emit.astype(jnp.int32)
                new = dict(out=out, seen=seen, n_out=n_out, step=idx + 1,
                           done=sm["done"] | (active & (hit_eos | (n_out >= max_new))),
                           eos_stop=sm["eos_stop"] | (active & hit_eos), step_logits=sm["step_logits"])
                if record:
                    new["step_logits"] = sm["step_logits"].at[:, idx].set(sm["logits"], mode="drop")
                recent_keep = jnp.broadcast_to(jnp.arange(c) <= slot, (b, c))
                step_params = dequantize(params) if self.dequant_in_step else call_params
                new["logits"], recent = model.apply(
                    {"params": step_params}, tok, prompt_lens + idx, cache, keep, recent, slot, recent_keep, window,
                    method=S1Model.decode_step)
                return (new, recent), None

            recent = tuple((jnp.zeros(k.shape[:2] + (c,) + k.shape[3:], k.dtype),
                            jnp.zeros(v.shape[:2] + (c,) + v.shape[3:], v.dtype)) for k, v in cache)
            small = dict(logits=st.logits, seen=st.seen, out=st.out, n_out=st.n_out, done=st.done,
                         eos_stop=st.eos_stop, step=st.step, step_logits=st.step_logits)
            (small, recent), _ = jax.lax.scan(one_step, (small, recent), jnp.arange(c))
            write = s_pad + start  # flush the chunk's keys/values into the cache
            cache = tuple((jax.lax.dynamic_update_slice(k, rk, (0, 0, write, 0)),
                           jax.lax.dynamic_update_slice(v, rv, (0, 0, write, 0)))
                          for (k, v), (rk, rv) in zip(cache, recent))
            valid = jax.lax.dynamic_update_slice(st.valid, jnp.ones((b, c), bool), (0, write))
            return DecodeState(cache=cache, valid=valid, **small)

        def cond(st):
            return (st.step < stop) & ~jnp.all(st.done)

        return jax.lax.while_loop(cond, chunk, state)

    # -- host driver ---------------------------------------------------------------------------------
    def plan(self, tx: int, p: int, max_new_tokens: int):
        """(Tx_pad, P_pad, cache_len) for these lengths; raises if they do not fit the cache."""
        tx_pad = buckets.multiple(tx, self.x_bucket)
        p_pad = buckets.multiple(p, self.p_bucket) if p else 0
        need = tx_pad + p_pad + buckets.multiple(max_new_tokens, self.chunk)
        if need > self.max_cache or p + max_new_tokens > self.max_cache:
            raise ValueError(
                f"prompt ({p} tokens) + phonemes ({tx}) + max_new_tokens ({max_new_tokens}) need {need} cache "
                f"positions, more than the KV cache holds ({self.max_cache}); shorten the prompt or the text, "
                "or lower max_new_tokens")
        return tx_pad, p_pad, buckets.pow2(need, self.min_window)

    def generate(self, params, x, x_lens, bert, prompt, prompt_lens, *, top_k=15, top_p=1.0, temperature=1.0,
                 repetition_penalty=1.35, max_new_tokens=1500, seeds=0, record_logits=False,
                 eos_ban_steps: int = EOS_BAN_STEPS, on_chunk=None) -> DecodeResult:
        """Decode a batch.  x int [B, Tx] / bert [B, 1024, Tx] right-padded with per-row ``x_lens``;
        prompt int [B, P] right-padded with ``prompt_lens`` (P = 0 or lens 0: reference-free).
        ``eos_ban_steps``: EOS is impossible before this step (the original's 11; benchmarks raise it).
        ``on_chunk(tokens, n_out, done)`` (streaming): the device loop returns to the host after every
        ``chunk`` steps and this sees the tokens so far (``[B, T]``, counts, finished rows); returning
        True stops the whole batch early (every row's client has gone)."""
        import time

        x = np.asarray(x)
        b, tx = x.shape
        prompt = np.zeros((b, 0), np.int32) if prompt is None else np.asarray(prompt)
        x_lens, prompt_lens = np.asarray(x_lens, np.int32), np.asarray(prompt_lens, np.int32)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive int (got {top_k!r})")
        tx_pad, p_pad, cache_len = self.plan(int(x_lens.max()), int(prompt_lens.max(initial=0)), max_new_tokens)
        xp = np.zeros((b, tx_pad), np.int32)
        xp[:, :tx] = x[:, :tx_pad]
        bp = np.zeros((b, bert.shape[1], tx_pad), np.float32)
        bp[:, :, :tx] = np.asarray(bert, np.float32)[:, :, :tx_pad]
        pp = np.zeros((b, p_pad), np.int32)
        pp[:, : prompt.shape[1]] = prompt[:, :p_pad]
        seeds = np.broadcast_to(np.asarray(seeds, np.uint32), (b,))
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
        t0 = time.perf_counter()
        state = self._prefill(params, xp, x_lens, bp, pp, prompt_lens, cache_len=cache_len, record=record_logits)
        jax.block_until_ready(state.logits)
        t_prefill = time.perf_counter() - t0
        s_pad = tx_pad + p_pad
        scalars = [jnp.asarray(v, dt) for v, dt in ((top_k, jnp.int32), (top_p, jnp.float32),
                                                    (temperature, jnp.float32), (repetition_penalty, jnp.float32),
                                                    (eos_ban_steps, jnp.int32))]
        t0, c0 = time.perf_counter(), time.process_time()
        step, window = 0, buckets.pow2(s_pad + min(max_new_tokens, self.first_window_tokens), self.min_window)
        while True:
            window = min(max(window, buckets.pow2(s_pad + step + 1, self.min_window)), cache_len)
            stop = min(window - s_pad, buckets.multiple(max_new_tokens, self.chunk))
            if on_chunk is not None:  # back on the host every chunk (same program: stop is traced)
                stop = min(stop, step + self.chunk)
            state = self._decode(params, state, keys, jnp.asarray(prompt_lens), jnp.int32(s_pad),
                                 jnp.int32(max_new_tokens), jnp.int32(stop), *scalars, window=window,
                                 record=record_logits)
            step, all_done = int(state.step), bool(jnp.all(state.done))
            if on_chunk is not None and on_chunk(np.asarray(state.out[:, :step]), np.asarray(state.n_out),
                                                 np.asarray(state.done)):
                break
            if all_done or step >= max_new_tokens:
                break
        t_decode, c_decode = time.perf_counter() - t0, time.process_time() - c0
        out, n_out = np.asarray(state.out), np.asarray(state.n_out)
        rows = [out[i, : n_out[i]].copy() for i in range(b)]
        logits = None
        if record_logits:
            logits = np.asarray(state.step_logits[:, :step])
        return DecodeResult(rows, np.asarray(state.eos_stop), logits,
                            {"prefill_s": t_prefill, "decode_s": t_decode, "decode_cpu_s": c_decode, "steps": step})
