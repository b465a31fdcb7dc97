// Grid size of the grid-stride kernels: ceil(n / threads) blocks, at least 1, at most cap
// (the kernels loop over what a capped grid does not cover).
#pragma once

#include <algorithm>
#include <cstdint>

namespace robustops {

inline unsigned grid_blocks(int64_t n, int threads, int64_t cap = int64_t(1) << 20) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(b, 1), cap));
}

}  // namespace robustops
