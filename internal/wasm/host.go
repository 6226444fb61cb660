package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"go.opentelemetry.io/otel/trace"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/runtime/logshim"
	"berth.dev/berth/internal/telemetry/logs"
)

// Limits the host applies whatever a function asks.
const (
	// MaxModuleBytes bounds a module's size: what is read from the
	// registry and compiled.
	MaxModuleBytes = 64 << 20
	// DefaultMemoryBytes is a function's memory when its resources leave
	// it out.
	DefaultMemoryBytes = 128 << 20
	// maxPages is wasm32's address space: 4 GiB in 64 KiB pages.
	maxPages = 65536
	pageSize = 64 << 10
	// MaxResponseBytes bounds what a module may write to stdout.
	MaxResponseBytes = 16 << 20
	// DefaultCompileTimeout bounds one module's compilation (a Go module
	// of 10 MB compiles in seconds).
	DefaultCompileTimeout = 2 * time.Minute
	// maxCompiling is how many compilations run at once, abandoned ones
	// included, so that modules that take long cannot take every core.
	maxCompiling = 2
	// maxRefused is how many refused modules the host remembers.
	maxRefused = 256
)

// Config is what the host needs.
type Config struct {
	// CacheDir holds wazero's compilation cache; empty keeps compiled code
	// in memory only.
	CacheDir string
	// LogDir is the root of the per-instance log files
	// (DIR/ENV/FUNCTION/INSTANCE.log, the format package logs reads);
	// empty sends module stderr to Logger only.
	LogDir         string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// Interpreter runs modules on wazero's interpreter instead of its
	// compiler (for platforms without the compiler; slower).
	Interpreter bool
	// CompileTimeout bounds one module's compilation; 0 means
	// DefaultCompileTimeout.
	CompileTimeout time.Duration
	// Egress makes the outgoing calls modules ask for (host module
	// berth_http) under their environment's egress policy; nil refuses
	// every such call.
	Egress Egress
}

// Function is one revision of a Wasm function as the host runs it.
type Function struct {
	Environment string
	Name        string
	Revision    int64
	// Digest names the module's content; a new digest is compiled anew.
	Digest string
	// Module returns the module's bytes. It is called only when Digest or
	// MemoryBytes changed since the last Apply.
	Module func(ctx context.Context) ([]byte, error)
	// Env is the module's environment (NAME=VALUE), before the request's
	// CGI variables.
	Env  []string
	Args []string
	// Files are given to the module read-only at their absolute paths
	// (config and secret files); nothing else of a file system is.
	Files map[string][]byte
	// MemoryBytes bounds one instance's linear memory (rounded down to
	// 64 KiB pages); 0 means DefaultMemoryBytes.
	MemoryBytes int64
	// Timeout bounds one invocation; the instance is stopped at it.
	Timeout time.Duration
}

type key struct{ env, name string }

// Host compiles and runs the Wasm functions of this server.
type Host struct {
	cfg    Config
	log    *slog.Logger
	cache  wazero.CompilationCache
	tracer trace.Tracer

	// compiling holds a token per compilation running, abandoned or not.
	compiling chan struct{}
	admission *admission

	mu       sync.Mutex
	fns      map[key]*function
	watchers []func(env, name string)
	// refused remembers why a module (by digest and memory limit) cannot
	// run, so that the controller's retries do not compile it again.
	refused map[refusedKey]error
}

type refusedKey struct {
	digest string
	pages  uint32
}

// New makes a host. Close releases what it compiled.
func New(cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CompileTimeout <= 0 {
		cfg.CompileTimeout = DefaultCompileTimeout
	}
	h := &Host{cfg: cfg, log: cfg.Logger, fns: map[key]*function{}, refused: map[refusedKey]error{},
		compiling: make(chan struct{}, maxCompiling), admission: newAdmission()}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache: %w", err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	if cfg.TracerProvider != nil {
		h.tracer = cfg.TracerProvider.Tracer("berth.dev/berth/internal/wasm")
	}
	return h, nil
}

// Watch registers fn, told when a function's compiled revision changes
// (the routes controller rebuilds the gateway's table).
func (h *Host) Watch(fn func(env, name string)) {
	h.mu.Lock()
	h.watchers = append(h.watchers, fn)
	h.mu.Unlock()
}

func (h *Host) notify(env, name string) {
	h.mu.Lock()
	ws := slices.Clone(h.watchers)
	h.mu.Unlock()
	for _, w := range ws {
		w(env, name)
	}
}

// function is one Wasm function: its current compiled revision, swapped
// whole on Apply, and the requests running.
type function struct {
	h       *Host
	env     string
	name    string
	cur     atomic.Pointer[revision]
	running atomic.Int64
	started atomic.Int64
	// memory is the sum of its running instances' linear memory sizes.
	memory   atomic.Int64
	logMu    sync.Mutex
	logw     *logshim.Writer
	logInst  string
	logClose func()
}

// revision is a compiled module with the settings it runs with. It is
// immutable once published; requests hold it while they run, so a new
// revision can be swapped in under them.
type revision struct {
	spec   Function
	digest string
	pages  uint32
	code   *code
	fsys   wazero.FSConfig
	// refs counts the requests using it plus one for being current; its
	// hold on the code goes when it reaches zero.
	refs atomic.Int64
}

func (r *revision) release(ctx context.Context) {
	if r.refs.Add(-1) == 0 {
		r.code.release(ctx)
	}
}

// code is a compiled module in its own runtime, shared by the revisions
// that differ only in settings; freed when the last lets go.
type code struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	// image is the initial memory when the module's data was split out of
	// it (splitData); nil when wazero applies the data itself.
	image *memoryImage
	refs  atomic.Int64
}

func (c *code) release(ctx context.Context) {
	if c.refs.Add(-1) == 0 {
		_ = c.rt.Close(ctx)
		c.image.Close()
	}
}

// Apply makes f the function's current revision, compiling its module
// when its digest or memory limit changed. An error says why the module
// cannot run (kind Invalid for a module that is not a WASI command).
func (h *Host) Apply(ctx context.Context, f Function) error {
	k := key{f.Environment, f.Name}
	h.mu.Lock()
	fn := h.fns[k]
	if fn == nil {
		fn = &function{h: h, env: f.Environment, name: f.Name}
		h.fns[k] = fn
	}
	h.mu.Unlock()

	pages := memoryPages(f.MemoryBytes)
	old := fn.cur.Load()
	if old != nil && old.digest == f.Digest && old.pages == pages {
		if old.spec.Revision == f.Revision && equalSettings(old.spec, f) {
			return nil
		}
		// Same code, new settings: share the compiled module.
		old.code.refs.Add(1)
		next := &revision{spec: f, digest: f.Digest, pages: pages, code: old.code, fsys: filesConfig(f.Files)}
		next.refs.Store(1)
		h.swap(ctx, fn, next, old)
		return nil
	}
	rk := refusedKey{f.Digest, pages}
	h.mu.Lock()
	err := h.refused[rk]
	h.mu.Unlock()
	if err != nil {
		return err
	}
	b, err := f.Module(ctx)
	if err != nil {
		return err
	}
	c, err := h.compile(ctx, b, pages)
	if err != nil {
		if v1.IsInvalid(err) && f.Digest != "" {
			h.mu.Lock()
			if len(h.refused) >= maxRefused {
				clear(h.refused)
			}
			h.refused[rk] = err
			h.mu.Unlock()
		}
		return err
	}
	next := &revision{spec: f, digest: f.Digest, pages: pages, code: c, fsys: filesConfig(f.Files)}
	next.refs.Store(1)
	h.swap(ctx, fn, next, old)
	h.log.Info("wasm module ready", "environment", f.Environment, "function", f.Name,
		"revision", f.Revision, "digest", f.Digest, "memoryPages", pages)
	return nil
}

// swap publishes next and drops old's "current" reference: old goes when
// its last request ends.
func (h *Host) swap(ctx context.Context, fn *function, next, old *revision) {
	fn.cur.Store(next)
	if old != nil {
		old.release(ctx)
	}
	h.notify(fn.env, fn.name)
}

func equalSettings(a, b Function) bool {
	if a.Timeout != b.Timeout || !slices.Equal(a.Env, b.Env) || !slices.Equal(a.Args, b.Args) || len(a.Files) != len(b.Files) {
		return false
	}
	for p, c := range a.Files {
		if d, ok := b.Files[p]; !ok || string(c) != string(d) {
			return false
		}
	}
	return true
}

// memoryPages turns a byte limit into wazero's page limit.
func memoryPages(b int64) uint32 {
	if b <= 0 {
		b = DefaultMemoryBytes
	}
	p := b / pageSize
	switch {
	case p < 1:
		return 1
	case p > maxPages:
		return maxPages
	}
	return uint32(p)
}

// runtimeConfig is the same for every function but for its memory limit.
func (h *Host) runtimeConfig(pages uint32) wazero.RuntimeConfig {
	rc := wazero.NewRuntimeConfig()
	if h.cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	return rc.WithCompilationCache(h.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages)
}

// compile checks a module's size and structure, then compiles it in a
// worker bounded by the compile timeout: a module that takes longer is
// refused and its worker abandoned (wazero's compiler cannot be stopped;
// it ends on its own, holding one of maxCompiling slots until then), so
// that no module holds the caller (a controller worker) longer.
func (h *Host) compile(ctx context.Context, b []byte, pages uint32) (*code, error) {
	if len(b) > MaxModuleBytes {
		return nil, v1.Invalid("the module is %d bytes; the most a Wasm function may be is %d", len(b), MaxModuleBytes)
	}
	if err := vetModule(b); err != nil {
		return nil, err
	}
	timeout := h.cfg.CompileTimeout
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case h.compiling <- struct{}{}:
	case <-tctx.Done():
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, v1.Unavailable("%d module compilations still running after %s", maxCompiling, timeout)
	}
	type result struct {
		c   *code
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-h.compiling }()
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("wasm compilation panicked", "panic", p)
				done <- result{nil, v1.Invalid("the module could not be compiled (the compiler failed on it)")}
			}
		}()
		c, err := h.compileNow(context.WithoutCancel(ctx), b, pages)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-tctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.release(context.Background())
			}
		}()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, v1.Invalid("the module did not compile within %s", timeout)
	}
}

// compileNow makes a runtime for one module and compiles it there. The
// runtime is the module's own: its memory limit is per function, and
// closing it frees the compiled code.
func (h *Host) compileNow(ctx context.Context, b []byte, pages uint32) (*code, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, h.runtimeConfig(pages))
	if _, err := wasi_snapshot_preview1.Instantiate(experimental.WithFunctionListenerFactory(ctx, waitListener{}), rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("%s: %w", hostModule, err)
	}
	// The whole module is checked (its data included), then what runs is
	// the module without its data when the data can be an image.
	compiled, err := checkModule(ctx, rt, b)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	var image *memoryImage
	if stripped, img, ok := splitData(b); ok && splitsData {
		lean, err := rt.CompileModule(ctx, stripped)
		if err == nil {
			compiled.Close(ctx)
			compiled, image = lean, newMemoryImage(img)
		}
	}
	c := &code{rt: rt, compiled: compiled, image: image}
	c.refs.Store(1)
	return c, nil
}

// checkModule compiles b in rt and checks that it is a WASI command that
// imports nothing but WASI and the host's berth_http functions: what the
// host can instantiate.
func checkModule(ctx context.Context, rt wazero.Runtime, b []byte) (wazero.CompiledModule, error) {
	compiled, err := rt.CompileModule(ctx, b)
	if err != nil {
		return nil, v1.Invalid("invalid WebAssembly module: %v", err)
	}
	for _, f := range compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
			continue
		case hostModule:
			sig, ok := hostFunctions[name]
			if !ok {
				compiled.Close(ctx)
				return nil, v1.Invalid("the module imports %s.%s; %s has only send, read and close", mod, name, hostModule)
			}
			if !allI32(f.ParamTypes(), sig.params) || !allI32(f.ResultTypes(), sig.results) {
				compiled.Close(ctx)
				return nil, v1.Invalid("the module imports %s.%s with the wrong signature: it takes %d and returns %d i32 values", mod, name, sig.params, sig.results)
			}
			continue
		}
		compiled.Close(ctx)
		return nil, v1.Invalid("the module imports %s.%s; a Wasm function may import only %s (WASI preview 1) and %s (outgoing calls)", mod, name, wasi_snapshot_preview1.ModuleName, hostModule)
	}
	if _, ok := compiled.ExportedFunctions()["_start"]; !ok {
		compiled.Close(ctx)
		return nil, v1.Invalid("the module exports no _start: build a WASI command (GOOS=wasip1 go build, a main package), not a library")
	}
	return compiled, nil
}

func allI32(ts []api.ValueType, n int) bool {
	if len(ts) != n {
		return false
	}
	for _, t := range ts {
		if t != api.ValueTypeI32 {
			return false
		}
	}
	return true
}

// Remove forgets a function; requests running finish on what they hold.
func (h *Host) Remove(ctx context.Context, env, name string) {
	k := key{env, name}
	h.mu.Lock()
	fn := h.fns[k]
	delete(h.fns, k)
	h.mu.Unlock()
	if fn == nil {
		return
	}
	if old := fn.cur.Swap(nil); old != nil {
		old.release(ctx)
	}
	fn.logMu.Lock()
	if fn.logClose != nil {
		fn.logClose()
		fn.logw, fn.logClose = nil, nil
	}
	fn.logMu.Unlock()
	h.notify(env, name)
}

// Ready reports the revision a function serves, if it has one compiled.
func (h *Host) Ready(env, name string) (revision int64, ok bool) {
	h.mu.Lock()
	fn := h.fns[key{env, name}]
	h.mu.Unlock()
	if fn == nil {
		return 0, false
	}
	r := fn.cur.Load()
	if r == nil {
		return 0, false
	}
	return r.spec.Revision, true
}

// Stats reports the instances of a function running now and started in
// all.
func (h *Host) Stats(env, name string) (running int, started int64) {
	h.mu.Lock()
	fn := h.fns[key{env, name}]
	h.mu.Unlock()
	if fn == nil {
		return 0, 0
	}
	return int(fn.running.Load()), fn.started.Load()
}

// Functions lists the functions the host holds ("env/name").
func (h *Host) Functions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.fns))
	for k := range h.fns {
		out = append(out, k.env+"/"+k.name)
	}
	slices.Sort(out)
	return out
}

// Close frees every function's compiled code and the cache handle.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	fns := h.fns
	h.fns = map[key]*function{}
	h.mu.Unlock()
	for _, fn := range fns {
		if old := fn.cur.Swap(nil); old != nil {
			old.release(ctx)
		}
		fn.logMu.Lock()
		if fn.logClose != nil {
			fn.logClose()
		}
		fn.logMu.Unlock()
	}
	return h.cache.Close(ctx)
}

// logWriter returns the function's log file for revision rev, opened on
// first use. Each revision is one "instance" in the logs' terms, so
// `berth logs --revision` finds it.
func (fn *function) logWriter(rev int64) *logshim.Writer {
	dir := fn.h.cfg.LogDir
	if dir == "" {
		return nil
	}
	inst := instanceName(fn.name, rev)
	fn.logMu.Lock()
	defer fn.logMu.Unlock()
	if fn.logw != nil && fn.logInst == inst {
		return fn.logw
	}
	if fn.logClose != nil {
		fn.logClose()
		fn.logw, fn.logClose = nil, nil
	}
	path := filepath.Join(logs.Dir(dir, fn.env, fn.name), inst+".log")
	w, err := logshim.OpenWriter(path, 10<<20, 3)
	if err != nil {
		fn.h.log.Warn("wasm log", "environment", fn.env, "function", fn.name, "err", err)
		return nil
	}
	if err := logs.WriteMeta(dir, fn.env, fn.name, inst, logs.Meta{Revision: rev}); err != nil {
		fn.h.log.Debug("wasm log sidecar", "err", err)
	}
	fn.logw, fn.logInst = w, inst
	fn.logClose = func() { w.Close() }
	return w
}

// instanceName is how a revision's instances appear in logs: one name for
// all of them, as they are many and short-lived.
func instanceName(fn string, rev int64) string {
	return fmt.Sprintf("%s-wasm-r%d", fn, rev)
}

// digestOf names bytes that came without a digest (tests, the fuzzer).
func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

var errNotReady = errors.New("no compiled revision")
