"""Token-id sequences, generated offline: the class is the keyword (token 1, 2 or 3) that occurs most often, among
random tokens and a distractor keyword. Your own data function returns (x, y) the same way: x int64 token ids
(N x length), y int labels; or {train, val, test} of those, used as given."""

import numpy as np


def load(n: int = 3000, length: int = 24, vocab: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(4, vocab, size=(n, length))
    y = rng.integers(0, 3, size=n)
    for i in range(n):
        k = rng.integers(2, 5)
        pos = rng.choice(length, size=k + 2, replace=False)
        x[i, pos[:k]] = 1 + y[i]
        x[i, pos[k:]] = 1 + (y[i] + rng.integers(1, 3)) % 3
    return x.astype(np.int64), y.astype(np.int64)
