// Syscalls and probes the SDK needs beside libbpf: perf_event_open, mount, BPF object ids,
// feature probes.
#include "common.h"
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdlib>
#include <cxxabi.h>
#include <cstring>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace tslcc {

static uint64_t U64(const Napi::Object &o, const char *k, uint64_t def = 0) {
  if (!o.Has(k)) return def;
  Napi::Value v = o.Get(k);
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return (uint64_t)v.As<Napi::Number>().Int64Value();
  if (v.IsBoolean()) return v.As<Napi::Boolean>() ? 1 : 0;
  return def;
}

// perfEventOpen(attr, pid, cpu, groupFd, flags) -> fd (close-on-exec)
static Napi::Value PerfEventOpen(const Napi::CallbackInfo &info) {
  Napi::Object a = info[0].As<Napi::Object>();
  struct perf_event_attr attr = {};
  attr.size = sizeof(attr);
  attr.type = (uint32_t)U64(a, "type");
  attr.config = U64(a, "config");
  if (a.Has("sampleFreq")) {
    attr.freq = 1;
    attr.sample_freq = U64(a, "sampleFreq");
  } else {
    attr.sample_period = U64(a, "samplePeriod");
  }
  attr.sample_type = U64(a, "sampleType");
  attr.wakeup_events = (uint32_t)U64(a, "wakeupEvents");
  attr.inherit = U64(a, "inherit") ? 1 : 0;
  attr.exclude_kernel = U64(a, "excludeKernel") ? 1 : 0;
  attr.exclude_user = U64(a, "excludeUser") ? 1 : 0;
  attr.disabled = U64(a, "disabled") ? 1 : 0;
  if (attr.type == PERF_TYPE_BREAKPOINT) {
    attr.bp_type = (uint32_t)U64(a, "bpType");
    attr.bp_addr = U64(a, "bpAddr");
    attr.bp_len = U64(a, "bpLen", 8);
  }
  int pid = info[1].As<Napi::Number>().Int32Value();
  int cpu = info[2].As<Napi::Number>().Int32Value();
  int group = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  unsigned long flags = info[4].IsNumber() ? (unsigned long)info[4].As<Napi::Number>().Int64Value() : 0;
  int fd = (int)syscall(__NR_perf_event_open, &attr, pid, cpu, group, flags | PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), "perf_event_open", errno);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// mount(source, target, fstype): for tracefs and bpffs, when they are not mounted yet.
static Napi::Value Mount(const Napi::CallbackInfo &info) {
  std::string src = info[0].As<Napi::String>(), dst = info[1].As<Napi::String>(), fs = info[2].As<Napi::String>();
  if (mount(src.c_str(), dst.c_str(), fs.c_str(), 0, nullptr)) ThrowErrno(info.Env(), "mount", errno, dst);
  return info.Env().Undefined();
}

// objectIds(kind: 'prog' | 'map' | 'link') -> ids of every such object in the kernel.
static Napi::Value ObjectIds(const Napi::CallbackInfo &info) {
  std::string kind = info[0].As<Napi::String>();
  int (*next)(uint32_t, uint32_t *) = kind == "prog" ? bpf_prog_get_next_id
                                     : kind == "map" ? bpf_map_get_next_id
                                                     : bpf_link_get_next_id;
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t id = 0, i = 0;
  while (!next(id, &id)) out.Set(i++, Napi::Number::New(info.Env(), id));
  if (errno != ENOENT) ThrowErrno(info.Env(), "bpf_obj_get_next_id", errno, kind);
  return out;
}

static Napi::Value ProbeProgType(const Napi::CallbackInfo &info) {
  int r = libbpf_probe_bpf_prog_type((enum bpf_prog_type)info[0].As<Napi::Number>().Int32Value(), nullptr);
  return Napi::Number::New(info.Env(), r);
}
static Napi::Value ProbeMapType(const Napi::CallbackInfo &info) {
  int r = libbpf_probe_bpf_map_type((enum bpf_map_type)info[0].As<Napi::Number>().Int32Value(), nullptr);
  return Napi::Number::New(info.Env(), r);
}
static Napi::Value ProbeHelper(const Napi::CallbackInfo &info) {
  int r = libbpf_probe_bpf_helper((enum bpf_prog_type)info[0].As<Napi::Number>().Int32Value(),
                                  (enum bpf_func_id)info[1].As<Napi::Number>().Int32Value(), nullptr);
  return Napi::Number::New(info.Env(), r);
}

// The running kernel's BTF, loaded once per process for feature probes.
static struct btf *VmlinuxBtf(int *err) {
  static struct btf *vmlinux = nullptr;
  static int load_err = 0;
  if (!vmlinux && !load_err) {
    vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux) load_err = errno ? errno : ENOENT;
  }
  *err = load_err;
  return vmlinux;
}

// kernelBtfFind(name, kind) -> type id in the kernel's BTF, or -errno (-ENOENT: none).
static Napi::Value KernelBtfFind(const Napi::CallbackInfo &info) {
  int err = 0;
  struct btf *b = VmlinuxBtf(&err);
  if (!b) return Napi::Number::New(info.Env(), -err);
  std::string name = info[0].As<Napi::String>();
  int id = btf__find_by_name_kind(b, name.c_str(), info[1].As<Napi::Number>().Uint32Value());
  return Napi::Number::New(info.Env(), id < 0 ? -ENOENT : id);
}

// probeTracing(expectedAttachType, btfId) -> 1 when a trivial BPF_PROG_TYPE_TRACING program
// of that attach type (fentry, fexit, tp_btf, ...) both loads and attaches to kernel BTF id
// btfId; otherwise -errno of the step that failed. The link is released at once. This is
// what libbpf-tools' fentry_can_attach() asks, plus the attach: some kernels load fentry
// programs and refuse the trampoline.
static Napi::Value ProbeTracing(const Napi::CallbackInfo &info) {
  struct bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, po,
              .expected_attach_type = (enum bpf_attach_type)info[0].As<Napi::Number>().Int32Value(),
              .attach_btf_id = info[1].As<Napi::Number>().Uint32Value());
  int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "tslcc_probe", "GPL", insns, 2, &po);
  if (fd < 0) return Napi::Number::New(info.Env(), -errno);
  int link = bpf_raw_tracepoint_open(nullptr, fd);
  int err = link < 0 ? errno : 0;
  if (link >= 0) close(link);
  close(fd);
  return Napi::Number::New(info.Env(), err ? -err : 1);
}

// demangle(names): the C++ runtime's demangler over a batch (one call per batch, not per
// name); null where a name is not a mangled C++ name.
static Napi::Value Demangle(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Array in = info[0].As<Napi::Array>();
  Napi::Array out = Napi::Array::New(env, in.Length());
  for (uint32_t i = 0; i < in.Length(); i++) {
    std::string name = in.Get(i).As<Napi::String>();
    int status = 0;
    char *d = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status == 0 && d) out.Set(i, Napi::String::New(env, d));
    else out.Set(i, env.Null());
    free(d);
  }
  return out;
}

Napi::Object InitSys(Napi::Env env, Napi::Object exports) {
  exports.Set("demangle", Napi::Function::New(env, Demangle));
  exports.Set("libbpfVersion", Napi::String::New(env, std::to_string(libbpf_major_version()) + "." +
                                                          std::to_string(libbpf_minor_version())));
  exports.Set("numPossibleCpus", Napi::Function::New(env, [](const Napi::CallbackInfo &info) -> Napi::Value {
                int n = libbpf_num_possible_cpus();
                if (n < 0) ThrowErrno(info.Env(), "libbpf_num_possible_cpus", n);
                return Napi::Number::New(info.Env(), n);
              }));
  exports.Set("perfEventOpen", Napi::Function::New(env, PerfEventOpen));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("objectIds", Napi::Function::New(env, ObjectIds));
  exports.Set("probeProgType", Napi::Function::New(env, ProbeProgType));
  exports.Set("probeMapType", Napi::Function::New(env, ProbeMapType));
  exports.Set("probeHelper", Napi::Function::New(env, ProbeHelper));
  exports.Set("kernelBtfFind", Napi::Function::New(env, KernelBtfFind));
  exports.Set("probeTracing", Napi::Function::New(env, ProbeTracing));
  return exports;
}

}  // namespace tslcc
