#!/bin/sh
# tests/cli/files.sh BIN - no file a user already had is ever damaged (issue 15):
# an output that is an input (also through a symlink or a hard link) is refused; a
# failing command leaves its output file as it was; an existing file is replaced only
# when it holds what kiln would write there (else --force); a write that fails (a
# full disk, a closed or full stdout) is exit status 3; `aot -o DIR` replaces only
# folders kiln made, whole; the REPL's :save follows the same rules.  Each check
# prints "FAIL: ..." when it fails; the last line is "files: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
. "$(dirname "$0")/../lib.sh"
scratch files
cd "$T" || exit 1

# same NAME FILE SUM: FILE still has checksum SUM.
same() { if [ "$(cksum <"$2")" = "$3" ]; then ok; else bad "$1: $2 was changed"; fi; }
# no_temps NAME: no temporary file or folder of kiln's is left behind.
no_temps() { if ls -a | grep -q '\.kiln-'; then bad "$1: left $(ls -a | grep '\.kiln-')"; else ok; fi; }

cat >m.kiln <<'EOF'
graph f(x: f32[B, 3]) -> f32[B, 3] {
    return relu(x) * 2.0
}
EOF
cat >two.kiln <<'EOF'
graph two(x: f32[2, 3]) -> (f32[2, 3], f32[2]) {
    return x, sum(x, axis=1)
}
EOF
prog=$(cksum <m.kiln)

# ---- an output that is an input
expect "emit -o the program" 2 "input" "$K" emit m.kiln --emit=ast -o m.kiln
same "emit -o the program" m.kiln "$prog"
ln -s m.kiln link.kiln
expect "emit -o a symlink to the program" 2 "input" "$K" emit m.kiln --emit=ast -o link.kiln
same "emit -o a symlink to the program" m.kiln "$prog"
ln m.kiln hard.kiln
expect "emit -o a hard link to the program" 2 "input" "$K" emit m.kiln --emit=ast -o hard.kiln --force
same "emit -o a hard link to the program" m.kiln "$prog"
expect "run --out the program" 2 "input" "$K" run m.kiln --dim B=2 --device=ref --out m.kiln --force
same "run --out the program" m.kiln "$prog"
"$K" run m.kiln --dim B=2 --device=ref --out x.npy 2>err || bad "run --out x.npy"
xs=$(cksum <x.npy)
expect "run --out its --in file" 2 "--in x" "$K" run m.kiln --device=ref --in x=x.npy --out x.npy
same "run --out its --in file" x.npy "$xs"

# ---- a failing command leaves its output as it was
"$K" emit m.kiln --emit=llvm --dim B=2 -o old.ll 2>err || bad "emit -o old.ll"
ll=$(cksum <old.ll)
expect "failed emit -o old.ll" 2 "--dim" "$K" emit m.kiln --emit=llvm -o old.ll
same "failed emit -o old.ll" old.ll "$ll"
expect "emit -o over its own output" 0 "" "$K" emit m.kiln --emit=ir --dim B=3 -o old.ll
if head -n 1 old.ll | grep -q '^graph f'; then ok; else bad "emit -o old.ll: not replaced"; fi
echo 'graph g(x: f32[2]) -> f32[2] {' >other.kiln
echo '    return x' >>other.kiln
echo '}' >>other.kiln
other=$(cksum <other.kiln)
expect "emit -o a program" 2 "not output of .kiln emit" "$K" emit m.kiln --emit=ir -o other.kiln
same "emit -o a program" other.kiln "$other"

# ---- only a .npy where a .npy goes, unless --force
echo "my notes" >notes.txt
notes=$(cksum <notes.txt)
expect "run --out notes.txt" 2 "not a \\.npy.*--force" "$K" run m.kiln --dim B=2 --device=ref --out notes.txt
same "run --out notes.txt" notes.txt "$notes"
expect "run --out notes.txt --force" 0 "" "$K" run m.kiln --dim B=2 --device=ref --out notes.txt --force
if head -c 6 notes.txt | grep -q NUMPY; then ok; else bad "--force: notes.txt is not a .npy"; fi
expect "run --out over a .npy" 0 "" "$K" run m.kiln --dim B=4 --device=ref --out x.npy
if [ "$(cksum <x.npy)" != "$xs" ]; then ok; else bad "run --out x.npy: not replaced"; fi
ln -s x.npy xlink.npy
expect "run --out a symlink to a .npy" 0 "" "$K" run m.kiln --dim B=5 --device=ref --out xlink.npy
if [ -L xlink.npy ] && [ "$(cksum <x.npy)" = "$(cksum <xlink.npy)" ]; then ok; else bad "symlink not kept"; fi
mkfifo fifo.npy
expect "run --out a FIFO" 2 "regular" "$K" run m.kiln --dim B=2 --device=ref --out fifo.npy
mkdir res
echo "keep" >res/1.npy
expect "run --out DIR with a foreign file" 2 "1\\.npy.*not a \\.npy" "$K" run two.kiln --device=ref --out res
if [ ! -e res/0.npy ] && [ "$(cat res/1.npy)" = keep ]; then ok; else bad "--out DIR: wrote before refusing"; fi
expect "run --out a new DIR" 0 "" "$K" run two.kiln --device=ref --out newres
if [ -s newres/0.npy ] && [ -s newres/1.npy ]; then ok; else bad "--out DIR: results missing"; fi

# ---- writes that fail: exit 3, nothing damaged
expect "stdout is full" 3 "standard output" sh -c "'$K' run m.kiln --dim B=2 --device=ref >/dev/full"
expect "stdout is closed" 3 "standard output" sh -c "'$K' run m.kiln --dim B=2 --device=ref >&-"
expect "emit to a full stdout" 3 "standard output" sh -c "'$K' emit m.kiln --emit=ir >/dev/full"
expect "help to a full stdout" 3 "standard output" sh -c "'$K' help >/dev/full"
"$K" run m.kiln --dim B=2 --device=ref --out big.npy 2>err || bad "run --out big.npy"
big=$(cksum <big.npy)
# a file-size limit makes the write fail as a full disk would
expect "a write that fails" 3 "cannot write big.npy" sh -c "trap '' XFSZ; ulimit -f 2; '$K' run m.kiln --dim B=1000 --device=ref --out big.npy"
same "a write that fails" big.npy "$big"
no_temps "a write that fails"

# ---- aot -o DIR
if "$K" help aot | grep -q cpu && "$K" aot m.kiln --target=cpu -o bundle --dim B=2 2>err; then
    ok
    if [ -s bundle/.kiln-bundle ] && [ -s bundle/f.o ]; then ok; else bad "aot: no manifest or no f.o"; fi
    expect "aot into kiln's own folder" 0 "" "$K" aot m.kiln --target=cuda -o bundle --dim B=2
    if [ ! -e bundle/f.o ] && [ -s bundle/f.ptx ]; then ok; else bad "aot: stale files of the old bundle left"; fi
    mkdir mine
    echo "mine" >mine/notes
    expect "aot into a foreign folder" 2 "kiln did not make.*--force" "$K" aot m.kiln --target=cpu -o mine --dim B=2
    if [ "$(ls mine)" = notes ]; then ok; else bad "aot: wrote into a foreign folder"; fi
    expect "aot --force into a foreign folder" 0 "" "$K" aot m.kiln --target=cpu -o mine --dim B=2 --force
    if [ "$(cat mine/notes)" = mine ] && [ -s mine/f.o ]; then ok; else bad "aot --force: lost or missing files"; fi
    mkdir empty
    expect "aot into an empty folder" 0 "" "$K" aot m.kiln --target=cpu -o empty --dim B=2
    cp m.kiln bundle/m.kiln
    expect "aot -o a folder holding the program" 2 "input" "$K" aot bundle/m.kiln --target=cpu -o bundle --dim B=2
    if [ -s bundle/f.ptx ]; then ok; else bad "aot: refused but changed the folder"; fi
    expect "aot that fails" 2 "--dim" "$K" aot m.kiln --target=cpu -o empty
    if [ -s empty/f.o ]; then ok; else bad "aot: a failed aot damaged the bundle"; fi
    no_temps "aot"
else
    bad "aot --target=cpu"
fi

# ---- the REPL's :save
printf 'x = rand([3])\n:save x notes2.txt\n:save x m.kiln\n:save x y.npy\n:save x y.npy\n:save --force x notes2.txt\n' >save.in
echo "more notes" >notes2.txt
"$K" repl <save.in >out 2>err
if [ "$(grep -c 'not a \.npy' err)" = 2 ]; then ok; else bad ":save refusals"; fi
same ":save over the program" m.kiln "$prog"
if head -c 6 y.npy | grep -q NUMPY && head -c 6 notes2.txt | grep -q NUMPY; then ok; else bad ":save did not write"; fi

summary files
