# lib.sh - shell functions the bench scripts share (sourced, never run).
#   llama_at_shape DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX
#       prints examples/llama/llama.elide with its sizes set to these (the model and
#       its policies otherwise unchanged); fails when the sizes line is not found
#   bench_paths [BUILD_DIR]
#       sets BUILD (default ROOT/build, made absolute), OUT (BUILD/bench-out, created),
#       ELIDE, RTLIB and CC (default cc) for a bench script
#   kern_model N K CTX
#       prints the one-linear model W[N, K] (embedding of 8 tokens, CTX rows) that
#       bench/kernel.c times
BENCH_LIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bench_paths() {
	BUILD="$(cd "${1:-$BENCH_LIB_ROOT/build}" && pwd)"
	OUT="$BUILD/bench-out"
	ELIDE="$BUILD/tools/elide"
	RTLIB="$BUILD/runtime/libelide_rt.a"
	CC="${CC:-cc}"
	mkdir -p "$OUT"
}

llama_at_shape() {
	local text
	text=$(sed -E "s/^(  const dim = )[^;]*;/\1$1, layers = $2, heads = $3, kv_heads = $4, ffn = $5, vocab = $6, ctx = $7;/" \
		"$BENCH_LIB_ROOT/examples/llama/llama.elide") || return 1
	if ! grep -q "const dim = $1, layers = $2," <<<"$text"; then
		echo "bench: could not set the sizes of examples/llama/llama.elide" >&2
		return 1
	fi
	printf '%s\n' "$text"
}

kern_model() {
	cat <<EOK
# one linear layer W[$1, $2], for bench/kernel.c
model kern {
  const n = $1, k = $2, vocab = 8, ctx = $3;
  weights safetensors {
    emb: f32[vocab, k] = "emb";
    w: f32[n, k] = "w";
  }
  entry step(token: i32, pos: i32) -> f32[n] {
    return linear(embed(emb, token), w);
  }
  entry forward(tokens: i32[<=ctx]) -> f32[<=ctx, n] {
    return linear(embed(emb, tokens), w);
  }
}
EOK
}
