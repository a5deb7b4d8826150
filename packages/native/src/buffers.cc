// Perf buffer and ring buffer consumers on the Node.js main loop.
//
// The consumer's epoll fd is watched with a uv_poll_t. When it is readable we drain the
// buffer with libbpf (poll with a zero timeout, so the inner epoll's ready list is
// harvested and a level-triggered fd cannot spin the loop), copy every record into one
// batch, and make ONE call into JS per batch. No threads, no per-event N-API call.
//
// Batch layout, 8-byte aligned records:
//   u32 size | u32 cpu | size bytes of data | padding to 8
// A perf "lost" record sets bit 31 of cpu and carries one u64: the number lost on that cpu.
// The callback gets (buffer, count, lost, used): the buffer is reused, only `used` bytes count.
#include "common.h"
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <linux/perf_event.h>
#include <algorithm>
#include <memory>
#include <uv.h>

namespace tslcc {

static constexpr uint32_t kLostFlag = 0x80000000u;

class Batch {
 public:
  void Add(uint32_t cpu, const void *data, uint32_t size) {
    size_t off = buf_.size();
    size_t padded = (size + 7u) & ~7u;
    buf_.resize(off + 8 + padded);
    memcpy(&buf_[off], &size, 4);
    memcpy(&buf_[off + 4], &cpu, 4);
    memcpy(&buf_[off + 8], data, size);
    if (padded > size) memset(&buf_[off + 8 + size], 0, padded - size);
    count_++;
  }
  void AddLost(uint32_t cpu, uint64_t n) {
    Add(cpu | kLostFlag, &n, 8);
    count_--;
    lost_ += n;
  }
  bool Empty() const { return buf_.empty(); }
  void Clear() {
    buf_.clear();
    count_ = 0;
    lost_ = 0;
    // A burst can grow the batch to the whole buffer; do not keep that much forever.
    if (buf_.capacity() > (8u << 20)) buf_.shrink_to_fit();
  }
  std::vector<uint8_t> buf_;
  uint32_t count_ = 0;
  double lost_ = 0;
};

// Common machinery: the uv poll handle, the JS callback and the batch.
template <typename Self>
class EventBuffer : public Napi::ObjectWrap<Self> {
 public:
  explicit EventBuffer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Self>(info) {}

 protected:
  void Start(Napi::Env env, int epoll_fd, Napi::Function cb, const char *name) {
    env_ = env;
    cb_ = Napi::Persistent(cb);
    async_ = std::make_unique<Napi::AsyncContext>(env, name);
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    int err = uv_poll_init(loop, poll_, epoll_fd);
    if (!err) err = uv_poll_start(poll_, UV_READABLE, &EventBuffer::OnPoll);
    if (err) {
      delete poll_;
      poll_ = nullptr;
      Napi::Error e = Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(err));
      e.Set("errno", Napi::Number::New(env, -err));
      throw e;
    }
    // An active consumer must not be garbage collected while the kernel still feeds it.
    this->Ref();
  }

  static void OnPoll(uv_poll_t *h, int status, int events) {
    Self *self = static_cast<Self *>(h->data);
    if (!self || self->closed_) return;
    Napi::HandleScope scope(self->env_);
    self->Drain(false);
  }

  // Pull everything available into the batch, then hand it to JS in one call.
  void Drain(bool all) {
    if (closed_) return;
    dispatching_ = true;
    static_cast<Self *>(this)->Consume(all);
    if (!batch_.Empty()) {
      Napi::Env env = env_;
      // One JS Buffer is reused for every batch (grown when a batch does not fit): records
      // are decoded synchronously in the callback, so nothing holds on to it afterwards.
      size_t len = batch_.buf_.size();
      if (js_buf_.IsEmpty() || js_cap_ < len) {
        js_cap_ = std::max<size_t>(len, 256u << 10);
        js_buf_ = Napi::Persistent(Napi::Buffer<uint8_t>::New(env, js_cap_));
      }
      Napi::Buffer<uint8_t> b = js_buf_.Value();
      memcpy(b.Data(), batch_.buf_.data(), len);
      Napi::Value used = Napi::Number::New(env, (double)len);
      Napi::Value count = Napi::Number::New(env, batch_.count_);
      Napi::Value lost = Napi::Number::New(env, batch_.lost_);
      batch_.Clear();
      try {
        cb_.MakeCallback(env.Global(), {b, count, lost, used}, *async_);
      } catch (const Napi::Error &e) {
        // Nobody on the JS stack can catch this: report it as an uncaught exception,
        // exactly as an EventEmitter listener that throws would be.
        napi_fatal_exception(env, e.Value());
      }
    }
    dispatching_ = false;
    if (close_pending_) DoClose();
  }

  Napi::Value JsDrain(const Napi::CallbackInfo &info) {
    Drain(true);
    return info.Env().Undefined();
  }
  Napi::Value JsClose(const Napi::CallbackInfo &info) {
    if (dispatching_) close_pending_ = true;
    else DoClose();
    return info.Env().Undefined();
  }
  Napi::Value JsRef(const Napi::CallbackInfo &info) {
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t *>(poll_));
    return info.Env().Undefined();
  }
  Napi::Value JsUnref(const Napi::CallbackInfo &info) {
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
    return info.Env().Undefined();
  }

  void DoClose(bool finalizing = false) {
    if (closed_) return;
    closed_ = true;
    close_pending_ = false;
    if (poll_) {
      // uv_close unregisters the fd synchronously; only the memory is freed later.
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t *>(poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
      poll_ = nullptr;
      if (!finalizing) this->Unref();
    }
    static_cast<Self *>(this)->Free();
    cb_.Reset();
    js_buf_.Reset();
  }

  Napi::Env env_ = nullptr;
  Napi::FunctionReference cb_;
  Napi::Reference<Napi::Buffer<uint8_t>> js_buf_;
  size_t js_cap_ = 0;
  std::unique_ptr<Napi::AsyncContext> async_;
  uv_poll_t *poll_ = nullptr;
  Batch batch_;
  bool closed_ = false, dispatching_ = false, close_pending_ = false;
};

// ---------------------------------------------------------------- perf buffer

// new PerfBuffer(mapFd, pageCnt, cb(batch, count, lost), { wakeupEvents?, wakeupBytes? })
class PerfBuffer : public EventBuffer<PerfBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PerfBuffer",
                       {InstanceMethod("drain", &PerfBuffer::JsDrain), InstanceMethod("close", &PerfBuffer::JsClose),
                        InstanceMethod("ref", &PerfBuffer::JsRef), InstanceMethod("unref", &PerfBuffer::JsUnref),
                        InstanceMethod("bufferCount", &PerfBuffer::BufferCount)});
  }
  explicit PerfBuffer(const Napi::CallbackInfo &info) : EventBuffer<PerfBuffer>(info) {
    Napi::Env env = info.Env();
    int fd = info[0].As<Napi::Number>().Int32Value();
    size_t pages = info[1].As<Napi::Number>().Uint32Value();
    Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
    struct perf_event_attr attr = {};
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.sample_period = 1;
    attr.size = sizeof(attr);
    uint32_t bytes = o.Has("wakeupBytes") && o.Get("wakeupBytes").IsNumber() ? o.Get("wakeupBytes").As<Napi::Number>().Uint32Value() : 0;
    uint32_t events = o.Has("wakeupEvents") && o.Get("wakeupEvents").IsNumber() ? o.Get("wakeupEvents").As<Napi::Number>().Uint32Value() : 1;
    if (bytes) {
      attr.watermark = 1;
      attr.wakeup_watermark = bytes;
    } else {
      attr.wakeup_events = events ? events : 1;
    }
    BeginLog();
    pb_ = perf_buffer__new_raw(fd, pages, &attr, &PerfBuffer::OnEvent, this, nullptr);
    if (!pb_) ThrowErrno(env, "perf_buffer__new_raw", errno);
    Start(env, perf_buffer__epoll_fd(pb_), info[2].As<Napi::Function>(), "tslcc:PerfBuffer");
  }
  ~PerfBuffer() override { DoClose(true); }

  // perf_poll() clears a perf fd's readiness when it is polled (atomic_xchg of rb->poll),
  // so the outer epoll's readiness check uses up the wakeup before perf_buffer__poll's own
  // epoll_wait could see it: consume every CPU's ring instead (an empty ring costs one
  // head/tail comparison). No inner epoll_wait is needed to keep the loop from spinning:
  // libuv's next level-triggered recheck of the inner epoll fd drops its stale entries.
  void Consume(bool) { perf_buffer__consume(pb_); }
  void Free() {
    if (pb_) perf_buffer__free(pb_);
    pb_ = nullptr;
  }

 private:
  static enum bpf_perf_event_ret OnEvent(void *ctx, int cpu, struct perf_event_header *e) {
    PerfBuffer *self = static_cast<PerfBuffer *>(ctx);
    if (e->type == PERF_RECORD_SAMPLE) {
      struct sample {
        struct perf_event_header h;
        uint32_t size;
        uint8_t data[];
      } *s = reinterpret_cast<struct sample *>(e);
      self->batch_.Add((uint32_t)cpu, s->data, s->size);
    } else if (e->type == PERF_RECORD_LOST) {
      struct lost {
        struct perf_event_header h;
        uint64_t id, lost;
      } *l = reinterpret_cast<struct lost *>(e);
      self->batch_.AddLost((uint32_t)cpu, l->lost);
    }
    return LIBBPF_PERF_EVENT_CONT;
  }
  Napi::Value BufferCount(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), pb_ ? (double)perf_buffer__buffer_cnt(pb_) : 0);
  }
  struct perf_buffer *pb_ = nullptr;
};

// ---------------------------------------------------------------- ring buffer

// new RingBuffer(mapFd, cb(batch, count, lost)). Ring buffer records carry no cpu (0).
class RingBuffer : public EventBuffer<RingBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RingBuffer",
                       {InstanceMethod("drain", &RingBuffer::JsDrain), InstanceMethod("close", &RingBuffer::JsClose),
                        InstanceMethod("ref", &RingBuffer::JsRef), InstanceMethod("unref", &RingBuffer::JsUnref)});
  }
  explicit RingBuffer(const Napi::CallbackInfo &info) : EventBuffer<RingBuffer>(info) {
    Napi::Env env = info.Env();
    int fd = info[0].As<Napi::Number>().Int32Value();
    BeginLog();
    rb_ = ring_buffer__new(fd, &RingBuffer::OnSample, this, nullptr);
    if (!rb_) ThrowErrno(env, "ring_buffer__new", errno);
    Start(env, ring_buffer__epoll_fd(rb_), info[1].As<Napi::Function>(), "tslcc:RingBuffer");
  }
  ~RingBuffer() override { DoClose(true); }

  void Consume(bool) { ring_buffer__consume(rb_); }
  void Free() {
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
  }

 private:
  static int OnSample(void *ctx, void *data, size_t size) {
    static_cast<RingBuffer *>(ctx)->batch_.Add(0, data, (uint32_t)size);
    return 0;
  }
  struct ring_buffer *rb_ = nullptr;
};

Napi::Object InitBuffers(Napi::Env env, Napi::Object exports) {
  exports.Set("PerfBuffer", PerfBuffer::Define(env));
  exports.Set("RingBuffer", RingBuffer::Define(env));
  return exports;
}

}  // namespace tslcc
