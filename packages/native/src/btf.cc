// BTF as plain JS data, and vmlinux.h generation through libbpf's btf_dump.
#include "common.h"
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstring>

namespace tslcc {

static const char *KindName(int kind) {
  switch (kind) {
    case BTF_KIND_INT: return "int";
    case BTF_KIND_PTR: return "ptr";
    case BTF_KIND_ARRAY: return "array";
    case BTF_KIND_STRUCT: return "struct";
    case BTF_KIND_UNION: return "union";
    case BTF_KIND_ENUM: return "enum";
    case BTF_KIND_FWD: return "fwd";
    case BTF_KIND_TYPEDEF: return "typedef";
    case BTF_KIND_VOLATILE: return "volatile";
    case BTF_KIND_CONST: return "const";
    case BTF_KIND_RESTRICT: return "restrict";
    case BTF_KIND_FUNC: return "func";
    case BTF_KIND_FUNC_PROTO: return "func_proto";
    case BTF_KIND_VAR: return "var";
    case BTF_KIND_DATASEC: return "datasec";
    case BTF_KIND_FLOAT: return "float";
    case BTF_KIND_DECL_TAG: return "decl_tag";
    case BTF_KIND_TYPE_TAG: return "type_tag";
    case BTF_KIND_ENUM64: return "enum64";
    default: return "unknown";
  }
}

// Index = type id; entry 0 is void (null).
Napi::Array BtfToJs(Napi::Env env, const struct btf *btf) {
  uint32_t n = btf__type_cnt(btf);
  Napi::Array out = Napi::Array::New(env, n);
  out.Set(0u, env.Null());
  for (uint32_t id = 1; id < n; id++) {
    const struct btf_type *t = btf__type_by_id(btf, id);
    int kind = btf_kind(t);
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", (double)id);
    o.Set("kind", KindName(kind));
    o.Set("name", btf__name_by_offset(btf, t->name_off));
    switch (kind) {
      case BTF_KIND_INT: {
        uint32_t enc = btf_int_encoding(t);
        o.Set("size", (double)t->size);
        o.Set("signed", (enc & BTF_INT_SIGNED) != 0);
        o.Set("char", (enc & BTF_INT_CHAR) != 0);
        o.Set("bool", (enc & BTF_INT_BOOL) != 0);
        o.Set("bitOffset", (double)btf_int_offset(t));
        o.Set("bits", (double)btf_int_bits(t));
        break;
      }
      case BTF_KIND_PTR:
      case BTF_KIND_TYPEDEF:
      case BTF_KIND_VOLATILE:
      case BTF_KIND_CONST:
      case BTF_KIND_RESTRICT:
      case BTF_KIND_TYPE_TAG:
      case BTF_KIND_FUNC:
        o.Set("type", (double)t->type);
        break;
      case BTF_KIND_ARRAY: {
        const struct btf_array *a = btf_array(t);
        o.Set("type", (double)a->type);
        o.Set("indexType", (double)a->index_type);
        o.Set("nelems", (double)a->nelems);
        break;
      }
      case BTF_KIND_STRUCT:
      case BTF_KIND_UNION: {
        o.Set("size", (double)t->size);
        const struct btf_member *m = btf_members(t);
        uint16_t vlen = btf_vlen(t);
        Napi::Array ms = Napi::Array::New(env, vlen);
        for (uint16_t i = 0; i < vlen; i++) {
          Napi::Object mo = Napi::Object::New(env);
          mo.Set("name", btf__name_by_offset(btf, m[i].name_off));
          mo.Set("type", (double)m[i].type);
          mo.Set("bitOffset", (double)btf_member_bit_offset(t, i));
          mo.Set("bitSize", (double)btf_member_bitfield_size(t, i));
          ms.Set(i, mo);
        }
        o.Set("members", ms);
        break;
      }
      case BTF_KIND_ENUM: {
        o.Set("size", (double)t->size);
        o.Set("signed", btf_kflag(t));
        const struct btf_enum *e = btf_enum(t);
        uint16_t vlen = btf_vlen(t);
        Napi::Array vs = Napi::Array::New(env, vlen);
        for (uint16_t i = 0; i < vlen; i++) {
          Napi::Object vo = Napi::Object::New(env);
          vo.Set("name", btf__name_by_offset(btf, e[i].name_off));
          vo.Set("value", btf_kflag(t) ? (double)e[i].val : (double)(uint32_t)e[i].val);
          vs.Set(i, vo);
        }
        o.Set("values", vs);
        break;
      }
      case BTF_KIND_ENUM64: {
        o.Set("size", (double)t->size);
        o.Set("signed", btf_kflag(t));
        const struct btf_enum64 *e = btf_enum64(t);
        uint16_t vlen = btf_vlen(t);
        Napi::Array vs = Napi::Array::New(env, vlen);
        for (uint16_t i = 0; i < vlen; i++) {
          Napi::Object vo = Napi::Object::New(env);
          vo.Set("name", btf__name_by_offset(btf, e[i].name_off));
          uint64_t v = btf_enum64_value(e + i);
          if (btf_kflag(t)) vo.Set("value", Napi::BigInt::New(env, (int64_t)v));
          else vo.Set("value", Napi::BigInt::New(env, v));
          vs.Set(i, vo);
        }
        o.Set("values", vs);
        break;
      }
      case BTF_KIND_FWD:
        o.Set("union", btf_kflag(t));
        break;
      case BTF_KIND_FUNC_PROTO: {
        o.Set("type", (double)t->type);
        const struct btf_param *p = btf_params(t);
        uint16_t vlen = btf_vlen(t);
        Napi::Array ps = Napi::Array::New(env, vlen);
        for (uint16_t i = 0; i < vlen; i++) {
          Napi::Object po = Napi::Object::New(env);
          po.Set("name", btf__name_by_offset(btf, p[i].name_off));
          po.Set("type", (double)p[i].type);
          ps.Set(i, po);
        }
        o.Set("params", ps);
        break;
      }
      case BTF_KIND_VAR:
        o.Set("type", (double)t->type);
        o.Set("linkage", (double)btf_var(t)->linkage);
        break;
      case BTF_KIND_DATASEC: {
        o.Set("size", (double)t->size);
        const struct btf_var_secinfo *v = btf_var_secinfos(t);
        uint16_t vlen = btf_vlen(t);
        Napi::Array vs = Napi::Array::New(env, vlen);
        for (uint16_t i = 0; i < vlen; i++) {
          Napi::Object vo = Napi::Object::New(env);
          vo.Set("type", (double)v[i].type);
          vo.Set("offset", (double)v[i].offset);
          vo.Set("size", (double)v[i].size);
          vs.Set(i, vo);
        }
        o.Set("vars", vs);
        break;
      }
      case BTF_KIND_FLOAT:
        o.Set("size", (double)t->size);
        break;
      case BTF_KIND_DECL_TAG:
        o.Set("type", (double)t->type);
        o.Set("componentIdx", (double)btf_decl_tag(t)->component_idx);
        break;
    }
    out.Set(id, o);
  }
  return out;
}

// parseBtf(bytes): plain data of a raw .BTF blob (a kernel's, or a test's).
static Napi::Value ParseBtf(const Napi::CallbackInfo &info) {
  Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
  BeginLog();
  struct btf *btf = btf__new(b.Data(), b.Length());
  if (!btf) ThrowErrno(info.Env(), "btf__new", errno);
  Napi::Array a = BtfToJs(info.Env(), btf);
  btf__free(btf);
  return a;
}

static void DumpPrintf(void *ctx, const char *fmt, va_list args) {
  std::string *out = static_cast<std::string *>(ctx);
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof buf, fmt, copy);
  va_end(copy);
  if (n < 0) return;
  if ((size_t)n < sizeof buf) {
    out->append(buf, n);
  } else {
    std::vector<char> big(n + 1);
    vsnprintf(big.data(), big.size(), fmt, args);
    out->append(big.data(), n);
  }
}

// Prototypes of the kernel's kfuncs: every FUNC carrying the "bpf_kfunc" decl tag (pahole
// 1.26+ writes them from the kernel's kfunc ID sets; a kernel built without them gets no
// prototypes). Weak, so a program that tests for one with bpf_ksym_exists() still loads on
// a kernel without it; guarded by BPF_NO_KFUNC_PROTOTYPES as recent bpftool's are.
static int DumpKfuncs(struct btf_dump *d, const struct btf *btf, std::string &out) {
  out += "\n/* BPF kfuncs */\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n";
  uint32_t n = btf__type_cnt(btf);
  std::vector<bool> done(n, false);
  for (uint32_t id = 1; id < n; id++) {
    const struct btf_type *t = btf__type_by_id(btf, id);
    if (!btf_is_decl_tag(t) || btf_decl_tag(t)->component_idx != -1) continue;
    if (strcmp(btf__name_by_offset(btf, t->name_off), "bpf_kfunc") != 0) continue;
    if (t->type >= n || done[t->type]) continue;
    const struct btf_type *f = btf__type_by_id(btf, t->type);
    if (!btf_is_func(f)) continue;
    done[t->type] = true;
    LIBBPF_OPTS(btf_dump_emit_type_decl_opts, opts, .field_name = btf__name_by_offset(btf, f->name_off));
    out += "extern ";
    int err = btf_dump__emit_type_decl(d, f->type, &opts);
    if (err) return err < 0 ? -err : err;
    // libbpf 1.1 prints an empty parameter list as "()"; say "(void)" as the kernel does,
    // so -Wstrict-prototypes stays quiet and the line matches a user's own declaration.
    const struct btf_type *proto = btf__type_by_id(btf, f->type);
    if (proto && btf_is_func_proto(proto) && btf_vlen(proto) == 0 && out.size() >= 2 && out.compare(out.size() - 2, 2, "()") == 0)
      out.insert(out.size() - 1, "void");
    out += " __weak __ksym;\n";
  }
  out += "#endif /* BPF_NO_KFUNC_PROTOTYPES */\n";
  return 0;
}

// dumpBtfAsC(path | null): the kernel's BTF (or the BTF at path) as a C header, the same
// shape bpftool's "btf dump format c" writes: every type, preserve_access_index on records.
static Napi::Value DumpBtfAsC(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  BeginLog();
  struct btf *btf = nullptr;
  std::string path;
  if (info[0].IsString()) {
    path = info[0].As<Napi::String>();
    btf = btf__parse(path.c_str(), nullptr);
  } else {
    btf = btf__load_vmlinux_btf();
  }
  if (!btf) ThrowErrno(env, info[0].IsString() ? "btf__parse" : "btf__load_vmlinux_btf", errno, path);
  std::string out;
  out.reserve(4u << 20);
  out += "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n";
  out += "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n";
  out += "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n";
  // The kfunc prototypes below need these before bpf_helpers.h is included (lbc.h includes
  // vmlinux.h first). Token for token libbpf's definitions, so its own #define is a no-op.
  out += "#ifndef __ksym\n#define __ksym __attribute__((section(\".ksyms\")))\n#endif\n\n";
  out += "#ifndef __weak\n#define __weak __attribute__((weak))\n#endif\n\n";
  struct btf_dump *d = btf_dump__new(btf, DumpPrintf, &out, nullptr);
  if (!d) {
    int err = errno;
    btf__free(btf);
    ThrowErrno(env, "btf_dump__new", err);
  }
  uint32_t n = btf__type_cnt(btf);
  for (uint32_t id = 1; id < n; id++) {
    int err = btf_dump__dump_type(d, id);
    if (err) {
      btf_dump__free(d);
      btf__free(btf);
      ThrowErrno(env, "btf_dump__dump_type", err);
    }
  }
  int err = DumpKfuncs(d, btf, out);
  btf_dump__free(d);
  btf__free(btf);
  if (err) ThrowErrno(env, "btf_dump__emit_type_decl", err);
  out += "\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n";
  return Napi::String::New(env, out);
}

Napi::Object InitBtf(Napi::Env env, Napi::Object exports) {
  exports.Set("parseBtf", Napi::Function::New(env, ParseBtf));
  exports.Set("dumpBtfAsC", Napi::Function::New(env, DumpBtfAsC));
  return exports;
}

}  // namespace tslcc
