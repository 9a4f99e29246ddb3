// A 2-D convolution of an NHWC input with an HWIO kernel, and both its gradients, by oneDNN, as
// XLA FFI handlers for the CPU (core/nn/onednn.py builds this file and calls it from JAX).
//
// The activations stay in the caller's NHWC layout; the kernel is reordered into the layout the
// primitive asks for (`format_tag::any`), which is what selects oneDNN's JIT kernels (with plain
// HWIO weights oneDNN falls back to im2col and a GEMM). Primitives are made once per geometry and
// kept; each call runs with its own scratchpad (`scratchpad_mode::user`), so XLA may call a
// handler from several threads at once.
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;

namespace {

enum Kind : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// kind, N, H, W, C, KH, KW, O, OH, OW, stride h, stride w, padding top, padding left
using Key = std::array<int64_t, 14>;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct Geometry {
  memory::desc src, wei, dst;
  memory::dims strides, pad_l, pad_r;
};

Geometry geometry(const Key& k, tag wei_tag) {
  auto f32 = memory::data_type::f32;
  // oneDNN's right padding makes OH = (H + top + bottom - KH) / stride + 1 exact
  int64_t bottom = (k[8] - 1) * k[10] + k[5] - k[2] - k[12], right = (k[9] - 1) * k[11] + k[6] - k[3] - k[13];
  return {memory::desc({k[1], k[4], k[2], k[3]}, f32, tag::nhwc), memory::desc({k[7], k[4], k[5], k[6]}, f32, wei_tag),
          memory::desc({k[1], k[7], k[8], k[9]}, f32, tag::nhwc), {k[10], k[11]}, {k[12], k[13]}, {bottom, right}};
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A primitive, and the reorder between the caller's HWIO kernel and the primitive's layout of it.
struct Entry {
  dnnl::primitive prim;
  memory::desc scratchpad, wei;
  std::optional<dnnl::reorder> reorder;
  size_t scratch_bytes;
  std::string impl;
};

template <typename P>
Entry entry(const typename P::primitive_desc& pd, const memory::desc& user_wei, bool to_user) {
  memory::desc wei = to_user ? pd.diff_weights_desc() : pd.weights_desc();
  size_t scratch_bytes = pd.scratchpad_desc().get_size();
  std::optional<dnnl::reorder> reorder;
  if (wei != user_wei) {
    auto rpd = to_user ? dnnl::reorder::primitive_desc(engine(), wei, engine(), user_wei, user_scratchpad())
                       : dnnl::reorder::primitive_desc(engine(), user_wei, engine(), wei, user_scratchpad());
    scratch_bytes = std::max(scratch_bytes, rpd.scratchpad_desc().get_size());
    reorder = dnnl::reorder(rpd);
  }
  return {P(pd), pd.scratchpad_desc(), wei, reorder, scratch_bytes, pd.impl_info_str()};
}

Entry make(const Key& k) {
  Geometry g = geometry(k, tag::any);
  memory::desc user_wei = geometry(k, tag::hwio).wei;
  auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(engine(), dnnl::prop_kind::forward_training, alg, g.src, g.wei, g.dst,
                                                g.strides, g.pad_l, g.pad_r, user_scratchpad());
  if (k[0] == kForward) return entry<dnnl::convolution_forward>(fwd, user_wei, false);
  if (k[0] == kBackwardData)
    return entry<dnnl::convolution_backward_data>(
        {engine(), alg, g.src, g.wei, g.dst, g.strides, g.pad_l, g.pad_r, fwd, user_scratchpad()}, user_wei, false);
  return entry<dnnl::convolution_backward_weights>(
      {engine(), alg, g.src, g.wei, g.dst, g.strides, g.pad_l, g.pad_r, fwd, user_scratchpad()}, user_wei, true);
}

const Entry& primitive(const Key& k) {
  static std::mutex mutex;
  static std::map<Key, Entry> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(k);
  return it != cache.end() ? it->second : cache.emplace(k, make(k)).first->second;
}

// src: (N, H, W, C), wei: (KH, KW, C, O), dst: (N, OH, OW, O); which of them is read and which
// written depends on the kind.
ffi::Error run(Kind kind, ffi::Span<const int64_t> src, ffi::Span<const int64_t> wei, ffi::Span<const int64_t> dst,
               float* src_p, float* wei_p, float* dst_p, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  if (src.size() != 4 || wei.size() != 4 || dst.size() != 4)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "dlrun oneDNN convolution: expected 4-d arrays");
  Key k{kind, src[0], src[1], src[2], src[3], wei[0], wei[1], wei[3], dst[1], dst[2], sh, sw, ph, pw};
  try {
    const Entry& e = primitive(k);
    Geometry g = geometry(k, tag::hwio);
    thread_local std::vector<char> scratch, kernel;
    if (scratch.size() < e.scratch_bytes) scratch.resize(e.scratch_bytes);
    if (e.reorder && kernel.size() < e.wei.get_size()) kernel.resize(e.wei.get_size());
    memory s(g.src, engine(), src_p), user_w(g.wei, engine(), wei_p), d(g.dst, engine(), dst_p);
    memory pad(e.scratchpad, engine(), scratch.data());
    memory w = e.reorder ? memory(e.wei, engine(), kernel.data()) : user_w;
    dnnl::stream stream(engine());
    if (e.reorder && kind != kBackwardWeights)
      e.reorder->execute(stream, {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, w}, {DNNL_ARG_SCRATCHPAD, pad}});
    if (kind == kForward)
      e.prim.execute(stream, {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, d}, {DNNL_ARG_SCRATCHPAD, pad}});
    else if (kind == kBackwardData)
      e.prim.execute(stream,
                     {{DNNL_ARG_DIFF_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, d}, {DNNL_ARG_SCRATCHPAD, pad}});
    else
      e.prim.execute(stream,
                     {{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, d}, {DNNL_ARG_SCRATCHPAD, pad}});
    if (e.reorder && kind == kBackwardWeights)
      e.reorder->execute(stream, {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, user_w}, {DNNL_ARG_SCRATCHPAD, pad}});
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("dlrun oneDNN convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error forward(F32 x, F32 w, Out y, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  return run(kForward, x.dimensions(), w.dimensions(), y->dimensions(), x.typed_data(), w.typed_data(), y->typed_data(),
             sh, sw, ph, pw);
}

ffi::Error backward_data(F32 g, F32 w, Out dx, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  return run(kBackwardData, dx->dimensions(), w.dimensions(), g.dimensions(), dx->typed_data(), w.typed_data(),
             g.typed_data(), sh, sw, ph, pw);
}

ffi::Error backward_weights(F32 x, F32 g, Out dw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  return run(kBackwardWeights, x.dimensions(), dw->dimensions(), g.dimensions(), x.typed_data(), dw->typed_data(),
             g.typed_data(), sh, sw, ph, pw);
}

}  // namespace

#define DLRUN_CONV_BINDING \
  ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>().Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("ph").Attr<int64_t>("pw")
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlrunConvForward, forward, DLRUN_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlrunConvBackwardData, backward_data, DLRUN_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlrunConvBackwardWeights, backward_weights, DLRUN_CONV_BINDING);

// The oneDNN implementation chosen for one call (e.g. "brgconv:avx2"), for the benchmarks' reports.
extern "C" const char* dlrun_conv_impl(int64_t kind, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                                        int64_t o, int64_t oh, int64_t ow, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  thread_local std::string info;
  try {
    info = primitive({kind, n, h, w, c, kh, kw, o, oh, ow, sh, sw, ph, pw}).impl;
  } catch (const dnnl::error& err) {
    info = std::string("error: ") + err.what();
  }
  return info.c_str();
}
