package controller

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/wasm"
)

// WasmHost runs the Wasm functions in-process (internal/wasm).
type WasmHost interface {
	Apply(ctx context.Context, f wasm.Function) error
	Remove(ctx context.Context, env, name string)
}

// WasmModules reads a Wasm function's module from the registry
// (internal/images).
type WasmModules interface {
	WasmModule(ctx context.Context, env, ref, digest string, max int64) ([]byte, error)
}

// ValueResolver reads the Secret and Config values a template names
// (internal/secrets).
type ValueResolver interface {
	Resolve(ctx context.Context, env string, refs []v1.ValueRef) (map[v1.ValueRef]string, error)
}

// syncWasm makes the host run fn's current revision. A Wasm function has
// no instances to scale: each request gets a fresh one in the gateway, so
// the autoscaler and the backend have nothing of it (what the backend ran
// before the function became Wasm is removed).
func (c *FunctionController) syncWasm(ctx context.Context, key string, ref backend.Ref, fn *v1.Function, cur *v1.Revision, revs []*v1.Revision) error {
	c.cfg.Scaler.Remove(ref.Environment, ref.Name)
	if _, err := c.cfg.Backend.Remove(ctx, ref); err != nil {
		return err
	}
	wf, err := c.wasmFunction(ctx, fn, cur)
	if err == nil {
		err = c.cfg.Wasm.Apply(ctx, wf)
	}
	p := progress{fn, &fn.Status.Conditions}
	if err != nil {
		if v1.IsInvalid(err) || v1.IsNotFound(err) {
			reason := "InvalidModule"
			if v1.IsNotFound(err) {
				reason = "ModuleNotFound"
			}
			msg := fmt.Sprintf("revision %d (%s): %v", cur.Spec.Number, cur.Spec.Image, err)
			if c.setCondition(ctx, p, v1.ConditionProgressing, false, reason, msg) {
				c.event(ctx, ref, "Warning", reason, msg)
			}
			c.q.AddAfter(key, c.cfg.ImageRetry)
			return nil
		}
		return err
	}
	st := functionStatus(fn, cur, nil, 0, time.Now())
	st.Conditions = putCondition(slices.Clone(st.Conditions), v1.ConditionProgressing, true, "WasmReady",
		"module compiled; every request runs in a fresh instance")
	if c.cfg.Stats != nil {
		inFlight, _, _ := c.cfg.Stats.Stats(fn.Metadata.Environment, fn.Metadata.Name)
		st.InFlight = int32(inFlight)
	}
	if !jsonEqual(fn.Status, st) {
		fn.Status = st
		if err := store.Update(ctx, c.cfg.Store, fn); err != nil {
			return err
		}
	}
	return c.pruneRevisions(ctx, cur, revs, nil, fn.Spec.Traffic)
}

// wasmFunction is what the host needs of fn's revision cur.
func (c *FunctionController) wasmFunction(ctx context.Context, fn *v1.Function, cur *v1.Revision) (wasm.Function, error) {
	t := cur.Spec.Template
	env, name := fn.Metadata.Environment, fn.Metadata.Name
	f := wasm.Function{
		Environment: env, Name: name, Revision: cur.Spec.Number, Digest: cur.Spec.ImageDigest,
		Args:    t.Args,
		Timeout: FunctionTimeout(fn),
		Module: func(ctx context.Context) ([]byte, error) {
			if c.cfg.WasmModules == nil {
				return nil, v1.Unavailable("this server has no registry to read Wasm modules from")
			}
			return c.cfg.WasmModules.WasmModule(ctx, env, cur.Spec.Image, cur.Spec.ImageDigest, wasm.MaxModuleBytes)
		},
	}
	if t.Resources.Memory != "" {
		b, err := v1.ParseMemory(t.Resources.Memory)
		if err != nil {
			return f, v1.FieldError("spec.resources.memory", "%v", err)
		}
		f.MemoryBytes = b
	}
	var values map[v1.ValueRef]string
	if refs := t.ValueRefs(); len(refs) > 0 {
		if c.cfg.Values == nil {
			return f, v1.Unavailable("this server cannot read secrets or config values")
		}
		var err error
		if values, err = c.cfg.Values.Resolve(ctx, env, refs); err != nil {
			return f, err
		}
	}
	f.Env = []string{
		"BERTH_ENVIRONMENT=" + env,
		"BERTH_NAME=" + name,
		"BERTH_REVISION=" + strconv.FormatInt(cur.Spec.Number, 10),
	}
	for _, e := range t.Env {
		val := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.Secret != nil:
			val = values[v1.ValueRef{Kind: v1.KindSecret, Name: e.ValueFrom.Secret.Name, Key: e.ValueFrom.Secret.Key}]
		case e.ValueFrom.Config != nil:
			val = values[v1.ValueRef{Kind: v1.KindConfig, Name: e.ValueFrom.Config.Name, Key: e.ValueFrom.Config.Key}]
		}
		f.Env = append(f.Env, e.Name+"="+val)
	}
	files := map[string][]byte{}
	mount := func(kind, src, dir string) {
		for ref, val := range values {
			if ref.Kind == kind && ref.Name == src {
				files[path.Join(dir, ref.Key)] = []byte(val)
			}
		}
	}
	for _, sf := range t.SecretFiles {
		mount(v1.KindSecret, sf.Secret, sf.MountPath)
	}
	for _, cf := range t.ConfigFiles {
		mount(v1.KindConfig, cf.Config, cf.MountPath)
	}
	if len(files) > 0 {
		f.Files = files
	}
	return f, nil
}
