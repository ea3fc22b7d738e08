"""Channel bookkeeping of a ShuffleNetV2 stage (chunk(2) -> branch convs -> concat -> channel shuffle
of 2 groups), padded with the prefix-block layouts of docs/support.md ("Channel shuffles"): checks
that every chunk(2) of the padded model splits the physical tensor at p exactly where the original
splits at c (the same channels, each once, padding elsewhere), for every half width c in 3..299 and
stages of 2, 3, 4 and 8 units, and prints the smallest p that works against the next multiple of 8.

Only channel positions matter: every conv absorbs any injective logical -> physical map through its
weights (zero rows and columns), so the convs are not simulated. Pure Python, no dependencies:

    python3 docs/proofs/shuffle.py          # the construction, c = 3..299 (about a minute)
    python3 docs/proofs/shuffle.py --runs   # exhaustive search over monotone layouts (runs + padding)
"""
import sys
import itertools

def blocks(count_in_first, K, c, p):
    # boundaries: logical counts n_k -> physical p / 2^k, k = 1..K; returns phi (logical -> physical)
    bounds = [(count_in_first(k), p >> k) for k in range(1, K + 1)]  # decreasing
    phi = [None] * c
    # blocks from the outermost: [n_1, c) -> [p/2, p), [n_2, n_1) -> [p/4, p/2), ..., [0, n_K) -> [0, p/2^K)
    edges = [(c, p)] + bounds + [(0, 0)]
    for (hi, phi_hi), (lo, phi_lo) in zip(edges, edges[1:]):
        if hi - lo > phi_hi - phi_lo:
            return None
        for j, i in enumerate(range(lo, hi)):
            phi[i] = phi_lo + j
    return phi

def x1_layout(c, p, K):   # a source whose channel i becomes logical 2^k i (even slot)
    return blocks(lambda k: -(-c // (1 << k)), K, c, p)

def b2_layout(c, p, K):   # a source whose channel i becomes logical 2^(k-1) (2 i + 1) (odd slot)
    return blocks(lambda k: sum(1 for i in range(c) if (2 * i + 1) << (k - 1) < c), K, c, p)

def stage(c, n, p):
    """n units (one stride-2, n-1 stride-1); every conv output (b1, b2) laid out for the units left."""
    if p % (1 << (n - 1)):
        return False
    # stride-2 unit: both sources are conv outputs; then n-1 stride-1 units
    src0 = x1_layout(c, p, n - 1)   # the first source lands in the even slots
    src1 = b2_layout(c, p, n - 1)
    if src0 is None or src1 is None:
        return False
    srcs = [src0, src1]
    for unit in range(n):
        # concat [src0 (c in p), src1 (c in p)] -> physical shuffle: slot 2j+e <- src_e[j]; logical 2i+e <- src_e i
        phys = [None] * (2 * p)
        for e, phi in enumerate(srcs):
            for i, j in enumerate(phi):
                phys[2 * j + e] = 2 * i + e
        if unit == n - 1:
            return True  # read by the next stage's convs: any injective map is absorbed
        # chunk(2): logical halves [0, c) and [c, 2c) must be the physical halves [0, p) and [p, 2p)
        first = [x for x in phys[:p] if x is not None]
        if sorted(first) != list(range(c)):
            return False
        x1 = [None] * c
        for j, x in enumerate(phys[:p]):
            if x is not None:
                x1[x] = j
        left = n - 2 - unit   # units after the next one
        b2 = b2_layout(c, p, left + 1) if left + 1 > 0 else list(range(c))
        if b2 is None:
            return False
        srcs = [x1, b2]
    return True

def monotone(c, p, n):
    """Exhaustive search: monotone layouts (align's runs, each followed by padding) for every conv
    output of a stage of n units such that every chunk(2) splits at p and every x1 half stays monotone."""
    layouts = list(itertools.combinations(range(p), c))

    def step(srcs, unit):
        phys = [None] * (2 * p)
        for e, phi in enumerate(srcs):
            for i, j in enumerate(phi):
                phys[2 * j + e] = 2 * i + e
        if unit == n - 1:
            return True
        first = [x for x in phys[:p] if x is not None]
        if first != list(range(c)):
            return False
        x1 = tuple(j for j, x in enumerate(phys[:p]) if x is not None)
        return any(step([x1, b2], unit + 1) for b2 in layouts)

    return any(step([a, b], 0) for a in layouts for b in layouts)


if "--runs" in sys.argv:
    for c, p, n in [(5, 8, 2), (5, 8, 3), (6, 8, 3), (7, 8, 3), (5, 8, 4), (6, 8, 4), (7, 8, 4)]:
        print(f"c={c} p={p} stage of {n} units: monotone layouts exist: {monotone(c, p, n)}")
    sys.exit(0)

worst = {}
for n in (2, 3, 4, 8):
    for c in range(3, 300):
        p8 = -(-c // 8) * 8
        p = next(p for p in itertools.count(p8, 8) if stage(c, n, p))
        worst[n] = max(worst.get(n, (1, 0, 0)), (p / p8, c, p))
    print(f"stage of {n} units: every c in 3..299 has an exact padding; worst cost vs next multiple of 8: x{worst[n][0]:.3f} (c={worst[n][1]}, p={worst[n][2]})")
for c, n in ((58, 4), (116, 8), (232, 4), (29, 4), (13, 4)):
    p8 = -(-c // 8) * 8
    p = next(p for p in itertools.count(p8, 8) if stage(c, n, p))
    print(f"c={c} n={n}: next multiple of 8 {p8}, smallest exact p {p}")
