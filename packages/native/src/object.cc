// bpf_object, bpf_program, bpf_map and bpf_link, one to one with libbpf.
#include "common.h"
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>

namespace tslcc {

// Per-environment state (main thread and each worker thread have their own).
struct AddonData {
  Napi::FunctionReference link_ctor;
};

// ---------------------------------------------------------------- Link

class Link : public Napi::ObjectWrap<Link> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Link",
                       {InstanceMethod("destroy", &Link::Destroy), InstanceMethod("fd", &Link::Fd),
                        InstanceMethod("pin", &Link::Pin)});
  }
  explicit Link(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Link>(info) {}
  ~Link() override {
    // A link the JS side forgot is still released, never leaked.
    if (link_) bpf_link__destroy(link_);
  }
  static Napi::Object Wrap(Napi::Env env, struct bpf_link *l) {
    Napi::Object o = env.GetInstanceData<AddonData>()->link_ctor.New({});
    Unwrap(o)->link_ = l;
    return o;
  }

 private:
  Napi::Value Destroy(const Napi::CallbackInfo &info) {
    if (link_) {
      bpf_link__destroy(link_);
      link_ = nullptr;
    }
    return info.Env().Undefined();
  }
  Napi::Value Fd(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), link_ ? bpf_link__fd(link_) : -1);
  }
  Napi::Value Pin(const Napi::CallbackInfo &info) {
    std::string path = info[0].As<Napi::String>();
    BeginLog();
    int err = link_ ? bpf_link__pin(link_, path.c_str()) : -EBADF;
    if (err) ThrowErrno(info.Env(), "bpf_link__pin", err, path);
    return info.Env().Undefined();
  }
  struct bpf_link *link_ = nullptr;
};

// ---------------------------------------------------------------- Object

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "BpfObject",
        {
            InstanceMethod("programs", &BpfObject::Programs),
            InstanceMethod("maps", &BpfObject::Maps),
            InstanceMethod("btf", &BpfObject::Btf),
            InstanceMethod("initialValue", &BpfObject::InitialValue),
            InstanceMethod("setInitialValue", &BpfObject::SetInitialValue),
            InstanceMethod("globalData", &BpfObject::GlobalData),
            InstanceMethod("setMapMaxEntries", &BpfObject::SetMapMaxEntries),
            InstanceMethod("setAutoload", &BpfObject::SetAutoload),
            InstanceMethod("setMapValueSize", &BpfObject::SetMapValueSize),
            InstanceMethod("setMapKeySize", &BpfObject::SetMapKeySize),
            InstanceMethod("setAttachTarget", &BpfObject::SetAttachTarget),
            InstanceMethod("setProgramType", &BpfObject::SetProgramType),
            InstanceMethod("load", &BpfObject::Load),
            InstanceMethod("programFd", &BpfObject::ProgramFd),
            InstanceMethod("mapFd", &BpfObject::MapFd),
            InstanceMethod("attach", &BpfObject::Attach),
            InstanceMethod("attachKprobe", &BpfObject::AttachKprobe),
            InstanceMethod("attachUprobe", &BpfObject::AttachUprobe),
            InstanceMethod("attachUsdt", &BpfObject::AttachUsdt),
            InstanceMethod("attachTracepoint", &BpfObject::AttachTracepoint),
            InstanceMethod("attachRawTracepoint", &BpfObject::AttachRawTracepoint),
            InstanceMethod("attachPerfEvent", &BpfObject::AttachPerfEvent),
            InstanceMethod("attachXdp", &BpfObject::AttachXdp),
            InstanceMethod("attachCgroup", &BpfObject::AttachCgroup),
            InstanceMethod("attachNetns", &BpfObject::AttachNetns),
            InstanceMethod("attachIter", &BpfObject::AttachIter),
            InstanceMethod("close", &BpfObject::Close),
        });
  }

  // new BpfObject(elf: Buffer, name: string, opts: { btfCustomPath?: string })
  explicit BpfObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<BpfObject>(info) {
    Napi::Env env = info.Env();
    Napi::Buffer<uint8_t> elf = info[0].As<Napi::Buffer<uint8_t>>();
    std::string name = info[1].As<Napi::String>();
    Napi::Object opts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
    // libbpf parses the ELF in place until load; keep our own copy alive as long as we are.
    elf_.assign(elf.Data(), elf.Data() + elf.Length());
    std::string btf_path;
    if (opts.Has("btfCustomPath") && opts.Get("btfCustomPath").IsString())
      btf_path = opts.Get("btfCustomPath").As<Napi::String>();
    LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = name.c_str(),
                .btf_custom_path = btf_path.empty() ? nullptr : btf_path.c_str());
    BeginLog();
    obj_ = bpf_object__open_mem(elf_.data(), elf_.size(), &oo);
    if (!obj_) {
      int err = errno;
      obj_ = nullptr;
      ThrowErrno(env, "bpf_object__open_mem", err, name);
    }
  }
  ~BpfObject() override {
    Unmap();
    if (obj_) bpf_object__close(obj_);
  }

 private:
  struct bpf_object *Obj(Napi::Env env) {
    if (!obj_) {
      Napi::Error e = Napi::Error::New(env, "object is closed");
      e.Set("errno", Napi::Number::New(env, EBADF));
      throw e;
    }
    return obj_;
  }
  struct bpf_program *Prog(Napi::Env env, const Napi::Value &v) {
    std::string n = v.As<Napi::String>();
    struct bpf_program *p = bpf_object__find_program_by_name(Obj(env), n.c_str());
    if (!p) ThrowErrno(env, "bpf_object__find_program_by_name", ENOENT, n);
    return p;
  }
  struct bpf_map *Map(Napi::Env env, const Napi::Value &v) {
    std::string n = v.As<Napi::String>();
    struct bpf_map *m = bpf_object__find_map_by_name(Obj(env), n.c_str());
    if (!m) ThrowErrno(env, "bpf_object__find_map_by_name", ENOENT, n);
    return m;
  }
  Napi::Value LinkOrThrow(Napi::Env env, struct bpf_link *l, const char *op, const std::string &subject) {
    if (!l) ThrowErrno(env, op, errno ? errno : EINVAL, subject);
    return Link::Wrap(env, l);
  }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    struct bpf_program *p;
    uint32_t i = 0;
    bpf_object__for_each_program(p, Obj(env)) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      o.Set("type", (double)bpf_program__type(p));
      const char *tn = libbpf_bpf_prog_type_str(bpf_program__type(p));
      o.Set("typeName", tn ? tn : "unknown");
      o.Set("expectedAttachType", (double)bpf_program__expected_attach_type(p));
      o.Set("autoload", bpf_program__autoload(p));
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    struct bpf_map *m;
    uint32_t i = 0;
    bpf_object__for_each_map(m, Obj(env)) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_map__name(m));
      o.Set("type", (double)bpf_map__type(m));
      const char *tn = libbpf_bpf_map_type_str(bpf_map__type(m));
      o.Set("typeName", tn ? tn : "unknown");
      o.Set("keySize", (double)bpf_map__key_size(m));
      o.Set("valueSize", (double)bpf_map__value_size(m));
      o.Set("maxEntries", (double)bpf_map__max_entries(m));
      o.Set("flags", (double)bpf_map__map_flags(m));
      o.Set("btfKeyTypeId", (double)bpf_map__btf_key_type_id(m));
      o.Set("btfValueTypeId", (double)bpf_map__btf_value_type_id(m));
      o.Set("internal", bpf_map__is_internal(m));
      o.Set("fd", (double)bpf_map__fd(m));
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value Btf(const Napi::CallbackInfo &info) {
    struct btf *b = bpf_object__btf(Obj(info.Env()));
    if (!b) return info.Env().Null();
    return BtfToJs(info.Env(), b);
  }

  Napi::Value InitialValue(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    size_t sz = 0;
    const void *p = bpf_map__initial_value(m, &sz);
    if (!p) return env.Null();
    return Napi::Buffer<uint8_t>::Copy(env, (uint8_t *)p, sz);
  }

  // globalData(map): after load, a Buffer over our own shared mapping of a global-data map
  // (BPF_F_MMAPABLE: .bss/.data read-write, frozen .rodata read-only), so reading or writing
  // a global is a memory access, not a syscall. libbpf 1.1 maps these only for skeletons,
  // hence the mmap here. Unmapped by close(); the SDK keeps the Buffer private and drops it
  // on close.
  Napi::Value GlobalData(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    int fd = bpf_map__fd(m);
    if (fd < 0 || !(bpf_map__map_flags(m) & BPF_F_MMAPABLE)) return env.Null();
    size_t size = (size_t)bpf_map__value_size(m) * bpf_map__max_entries(m);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = (size + page - 1) / page * page;
    bool ro = bpf_map__map_flags(m) & BPF_F_RDONLY_PROG;
    void *p = mmap(nullptr, len, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED && !ro) p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);  // frozen
    if (p == MAP_FAILED) ThrowErrno(env, "mmap", errno, bpf_map__name(m));
    mappings_.push_back({p, len});
    return Napi::Buffer<uint8_t>::New(env, (uint8_t *)p, size);
  }

  void Unmap() {
    for (auto &mp : mappings_) munmap(mp.first, mp.second);
    mappings_.clear();
  }

  Napi::Value SetInitialValue(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
    BeginLog();
    int err = bpf_map__set_initial_value(m, b.Data(), b.Length());
    if (err) ThrowErrno(env, "bpf_map__set_initial_value", err, bpf_map__name(m));
    return env.Undefined();
  }

  Napi::Value SetMapMaxEntries(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    BeginLog();
    int err = bpf_map__set_max_entries(m, info[1].As<Napi::Number>().Uint32Value());
    if (err) ThrowErrno(env, "bpf_map__set_max_entries", err, bpf_map__name(m));
    return env.Undefined();
  }

  Napi::Value SetAutoload(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    int err = bpf_program__set_autoload(p, info[1].As<Napi::Boolean>());
    if (err) ThrowErrno(env, "bpf_program__set_autoload", err, bpf_program__name(p));
    return env.Undefined();
  }

  Napi::Value SetMapValueSize(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    BeginLog();
    int err = bpf_map__set_value_size(m, info[1].As<Napi::Number>().Uint32Value());
    if (err) ThrowErrno(env, "bpf_map__set_value_size", err, bpf_map__name(m));
    return env.Undefined();
  }

  Napi::Value SetMapKeySize(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_map *m = Map(env, info[0]);
    BeginLog();
    int err = bpf_map__set_key_size(m, info[1].As<Napi::Number>().Uint32Value());
    if (err) ThrowErrno(env, "bpf_map__set_key_size", err, bpf_map__name(m));
    return env.Undefined();
  }

  // setAttachTarget(prog, func): the kernel function (or BTF type) an fentry/fexit/tp_btf/
  // lsm program attaches to, resolved against vmlinux BTF at load.
  Napi::Value SetAttachTarget(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    std::string fn = info[1].As<Napi::String>();
    BeginLog();
    int err = bpf_program__set_attach_target(p, 0, fn.c_str());
    if (err) ThrowErrno(env, "bpf_program__set_attach_target", err, fn);
    return env.Undefined();
  }

  // setProgramType(prog, type, expectedAttachType)
  Napi::Value SetProgramType(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    int err = bpf_program__set_type(p, (enum bpf_prog_type)info[1].As<Napi::Number>().Int32Value());
    if (!err) err = bpf_program__set_expected_attach_type(p, (enum bpf_attach_type)info[2].As<Napi::Number>().Int32Value());
    if (err) ThrowErrno(env, "bpf_program__set_type", err, bpf_program__name(p));
    return env.Undefined();
  }

  // load(): on failure the Error's libbpfLog holds libbpf's lines, including the verifier
  // log between "-- BEGIN PROG LOAD LOG --" and "-- END PROG LOAD LOG --".
  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    BeginLog();
    int err = bpf_object__load(Obj(env));
    if (err) ThrowErrno(env, "bpf_object__load", err, bpf_object__name(obj_));
    TakeLog();
    return env.Undefined();
  }

  Napi::Value ProgramFd(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), bpf_program__fd(Prog(info.Env(), info[0])));
  }
  Napi::Value MapFd(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), bpf_map__fd(Map(info.Env(), info[0])));
  }

  Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach(p), "bpf_program__attach", bpf_program__name(p));
  }

  // attachKprobe(prog, func, retprobe, offset)
  Napi::Value AttachKprobe(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    std::string func = info[1].As<Napi::String>();
    LIBBPF_OPTS(bpf_kprobe_opts, ko, .offset = (size_t)info[3].As<Napi::Number>().Int64Value(),
                .retprobe = info[2].As<Napi::Boolean>());
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_kprobe_opts(p, func.c_str(), &ko),
                       "bpf_program__attach_kprobe_opts", func);
  }

  // attachUprobe(prog, retprobe, pid, binaryPath, offset, funcName | null)
  Napi::Value AttachUprobe(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    bool ret = info[1].As<Napi::Boolean>();
    int pid = info[2].As<Napi::Number>().Int32Value();
    std::string path = info[3].As<Napi::String>();
    size_t off = (size_t)info[4].As<Napi::Number>().Int64Value();
    std::string fn = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "";
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = ret, .func_name = fn.empty() ? nullptr : fn.c_str());
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_uprobe_opts(p, pid, path.c_str(), off, &uo),
                       "bpf_program__attach_uprobe_opts", path + (fn.empty() ? "" : ":" + fn));
  }

  // attachUsdt(prog, pid, binaryPath, provider, name, cookie: number | bigint)
  Napi::Value AttachUsdt(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    int pid = info[1].As<Napi::Number>().Int32Value();
    std::string path = info[2].As<Napi::String>(), provider = info[3].As<Napi::String>(),
                name = info[4].As<Napi::String>();
    bool lossless;
    uint64_t cookie = info[5].IsBigInt() ? info[5].As<Napi::BigInt>().Uint64Value(&lossless)
                                         : (uint64_t)info[5].As<Napi::Number>().Int64Value();
    LIBBPF_OPTS(bpf_usdt_opts, uo, .usdt_cookie = cookie);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_usdt(p, pid, path.c_str(), provider.c_str(), name.c_str(), &uo),
                       "bpf_program__attach_usdt", path + ":" + provider + ":" + name);
  }

  Napi::Value AttachTracepoint(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    std::string cat = info[1].As<Napi::String>(), name = info[2].As<Napi::String>();
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_tracepoint(p, cat.c_str(), name.c_str()),
                       "bpf_program__attach_tracepoint", cat + "/" + name);
  }

  Napi::Value AttachRawTracepoint(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    std::string name = info[1].As<Napi::String>();
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_raw_tracepoint(p, name.c_str()),
                       "bpf_program__attach_raw_tracepoint", name);
  }

  // attachPerfEvent(prog, perfFd): the link owns perfFd and closes it on destroy.
  Napi::Value AttachPerfEvent(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_perf_event(p, info[1].As<Napi::Number>().Int32Value()),
                       "bpf_program__attach_perf_event", bpf_program__name(p));
  }

  Napi::Value AttachXdp(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_xdp(p, info[1].As<Napi::Number>().Int32Value()),
                       "bpf_program__attach_xdp", bpf_program__name(p));
  }

  Napi::Value AttachCgroup(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_cgroup(p, info[1].As<Napi::Number>().Int32Value()),
                       "bpf_program__attach_cgroup", bpf_program__name(p));
  }

  Napi::Value AttachNetns(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_netns(p, info[1].As<Napi::Number>().Int32Value()),
                       "bpf_program__attach_netns", bpf_program__name(p));
  }

  Napi::Value AttachIter(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    struct bpf_program *p = Prog(env, info[0]);
    BeginLog();
    errno = 0;
    return LinkOrThrow(env, bpf_program__attach_iter(p, nullptr), "bpf_program__attach_iter",
                       bpf_program__name(p));
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Unmap();
    if (obj_) {
      bpf_object__close(obj_);
      obj_ = nullptr;
    }
    elf_.clear();
    elf_.shrink_to_fit();
    return info.Env().Undefined();
  }

  struct bpf_object *obj_ = nullptr;
  std::vector<uint8_t> elf_;
  std::vector<std::pair<void *, size_t>> mappings_;
};

// ---------------------------------------------------------------- map syscalls by fd

static int Fd(const Napi::Value &v) { return v.As<Napi::Number>().Int32Value(); }
static void *Data(const Napi::Value &v) {
  return v.IsBuffer() ? (void *)v.As<Napi::Buffer<uint8_t>>().Data() : nullptr;
}

// mapLookup(fd, key, valueOut): true if found, false on ENOENT.
static Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  int err = bpf_map_lookup_elem(Fd(info[0]), Data(info[1]), Data(info[2]));
  if (err && errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  if (err) ThrowErrno(info.Env(), "bpf_map_lookup_elem", errno);
  return Napi::Boolean::New(info.Env(), true);
}
static Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  uint64_t flags = info[3].IsNumber() ? (uint64_t)info[3].As<Napi::Number>().Int64Value() : 0;
  if (bpf_map_update_elem(Fd(info[0]), Data(info[1]), Data(info[2]), flags))
    ThrowErrno(info.Env(), "bpf_map_update_elem", errno);
  return info.Env().Undefined();
}
static Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  int err = bpf_map_delete_elem(Fd(info[0]), Data(info[1]));
  if (err && errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  if (err) ThrowErrno(info.Env(), "bpf_map_delete_elem", errno);
  return Napi::Boolean::New(info.Env(), true);
}
// mapNextKey(fd, key | null, nextOut): false when there is no next key.
static Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  int err = bpf_map_get_next_key(Fd(info[0]), info[1].IsNull() ? nullptr : Data(info[1]), Data(info[2]));
  if (err && errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  if (err) ThrowErrno(info.Env(), "bpf_map_get_next_key", errno);
  return Napi::Boolean::New(info.Env(), true);
}
static Napi::Value MapLookupAndDelete(const Napi::CallbackInfo &info) {
  int err = bpf_map_lookup_and_delete_elem(Fd(info[0]), Data(info[1]), Data(info[2]));
  if (err && errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  if (err) ThrowErrno(info.Env(), "bpf_map_lookup_and_delete_elem", errno);
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Object InitObject(Napi::Env env, Napi::Object exports) {
  Napi::Function link = Link::Define(env);
  AddonData *data = new AddonData;
  data->link_ctor = Napi::Persistent(link);
  env.SetInstanceData(data);
  exports.Set("Link", link);
  exports.Set("BpfObject", BpfObject::Define(env));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapLookupAndDelete", Napi::Function::New(env, MapLookupAndDelete));
  return exports;
}

}  // namespace tslcc
