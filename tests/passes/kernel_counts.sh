#!/bin/sh
# kernel_counts.sh - what the fusion scheduler makes of every example at -O2.
#
#     sh tests/passes/kernel_counts.sh BUILD/kiln
#
# Reads `kiln emit FILE -g GRAPH --emit=kernels` and checks, per graph (of an
# example, or of a file named by its path such as tests/ops/v1):
#   count N           the program has N kernels
#   share OP,OP,...   one kernel computes all these graph ops (with repeats)
#   alone OP          a kernel computes OP and nothing else of substance
#   nocopy            no kernel is of kind `copy` (data movement only)
# Rules may carry flags for kiln after a '|' (e.g. the mixed-precision
# epilogue check).  The counts are today's (docs/performance.md); when the
# scheduler gets better, lower them here.  Every graph of every example must
# have at least one rule.  Prints "kernels: N passed, N failed" last.
KILN=${1:?usage: kernel_counts.sh KILN}
DIMS="--dim B=2 --dim T=8 --dim N=4"
. "$(dirname "$0")/../lib.sh"

RULES="
gelu_chain gelu_chain count 1
gelu_chain gelu_chain share mul,add,gelu,sqrt,tanh,sigmoid,exp,abs,neg
mlp mlp count 3
mlp mlp share matmul,add,relu
mlp mlp share matmul,add
mlp mlp alone softmax
mlp mlp share matmul,cast,add,relu,cast | --precision=bf16
softmax softmax_builtin count 1
softmax softmax_builtin alone softmax
softmax classify count 2
softmax classify alone log_softmax
softmax softmax_manual count 1
softmax softmax_manual share max,sub,exp,sum,div
layernorm layernorm_builtin count 1
layernorm layernorm_builtin alone layernorm
layernorm layernorm_manual count 1
layernorm layernorm_manual share mean,sub,mul,rsqrt,add
layernorm rmsnorm_manual count 1
lenet lenet count 7
lenet lenet share conv2d,relu
lenet lenet share matmul,add,relu
attention attention count 7
attention attention nocopy
attention attention share matmul,mul
attention masked_attention count 7
attention masked_attention nocopy
attention masked_attention share matmul,mul,add
transformer_block block count 11
transformer_block block nocopy
transformer_block block share matmul,add,gelu
transformer_block block share matmul,add,add
transformer_block block nocopy | --precision=auto
transformer_block self_attention count 7
transformer_block self_attention nocopy
tests/ops/v1 conv_bn_relu count 1
tests/ops/v1 conv_bn_relu share conv2d,add,rsqrt,mul,sub,mul,add,relu
tests/ops/v1 embedding count 1
tests/ops/v1 embedding share take,add,layernorm
"

# The kernels of one graph, one line each: "KIND op op op ...".
kernels() { # file graph [flags]   (file: an example's name, or a path without .kiln)
    case $1 in */*) file="$1.kiln" ;; *) file="examples/$1.kiln" ;; esac
    "$KILN" emit "$file" -g "$2" --emit=kernels $DIMS $3 2>&1 |
        awk '/^  kernel / {
                 kind = $3; gsub(/[(),]/, "", kind); ops = ""
                 for (i = 7; i <= NF; i++) { split($i, p, ":"); if (p[2] != "const" && p[2] != "param") ops = ops " " p[2] }
                 print kind ops }
             /^kiln: / { print "ERROR " $0 }'
}

check() { # file graph rule arg flags
    ks=$(kernels "$1" "$2" "$5")
    why=""
    case "$ks" in *ERROR*) why=$(printf '%s\n' "$ks" | grep ERROR | head -n 1) ;; esac
    if [ -z "$why" ]; then
        case "$3" in
        count)
            n=$(printf '%s\n' "$ks" | grep -c .)
            [ "$n" = "$4" ] || why="$n kernels, expected $4"
            ;;
        nocopy)
            c=$(printf '%s\n' "$ks" | grep -c '^copy')
            [ "$c" = 0 ] || why="$c copy kernels: $(printf '%s\n' "$ks" | grep '^copy' | tr '\n' ';')"
            ;;
        share | alone)
            found=$(printf '%s\n' "$ks" | awk -v want="$4" -v alone="$3" '
                { n = split(want, w, ","); delete have; m = 0
                  for (i = 2; i <= NF; i++) { have[$i]++; m++ }
                  ok = 1
                  for (i = 1; i <= n; i++) { if (have[w[i]] < 1) ok = 0; have[w[i]]-- }
                  if (alone == "alone" && m != n) ok = 0
                  if (ok) { print "yes"; exit } }')
            [ "$found" = yes ] || why="no kernel computes $4$([ "$3" = alone ] && echo ' alone'); kernels: $(printf '%s\n' "$ks" | tr '\n' ';')"
            ;;
        *) why="unknown rule $3" ;;
        esac
    fi
    if [ -n "$why" ]; then bad "$1/$2 $3 $4 $5: $why"; else ok; fi
}

every_graph_listed "$RULES" "rule in tests/passes/kernel_counts.sh"

while read -r file graph rule arg rest; do
    [ -n "$file" ] || continue
    flags=""
    case "$arg" in "|") arg=""; flags=$rest ;; esac
    case "$rest" in "|"*) flags=${rest#|} ;; esac
    check "$file" "$graph" "$rule" "$arg" "$flags"
done <<END
$RULES
END
summary kernels
