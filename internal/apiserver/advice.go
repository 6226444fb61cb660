package apiserver

import (
	"context"
	"encoding/json"
	"net/http"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/convert"
	"berth.dev/berth/internal/store"
)

// Advisor answers the advice endpoints (*advisor.Advisor).
type Advisor interface {
	Advice(ctx context.Context, env, name string, q v1.AdviceQuery) (v1.Advice, error)
	List(ctx context.Context, env string, q v1.AdviceQuery) (v1.AdviceList, error)
}

// Converter switches a workload's kind (*convert.Converter).
type Converter interface {
	Convert(ctx context.Context, objs convert.Objects, from, env, name string, req v1.ConvertRequest) (v1.ConvertResult, error)
}

func (s *Server) existingEnvironment(ctx context.Context, env string) error {
	e, err := s.environment(ctx, env)
	if err != nil {
		return err
	}
	if e == nil {
		return v1.NotFound("environment %q not found", env)
	}
	return nil
}

// adviceList is GET /api/v1/environments/{env}/advice.
func (s *Server) adviceList(w http.ResponseWriter, r *http.Request) error {
	if s.advisor == nil {
		return v1.Unavailable("this server keeps no traffic history: no advice")
	}
	env := r.PathValue("env")
	if err := s.existingEnvironment(r.Context(), env); err != nil {
		return err
	}
	q, err := v1.ParseAdviceQuery(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := s.advisor.List(r.Context(), env, q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

// advice is GET /api/v1/environments/{env}/advice/{name}.
func (s *Server) advice(w http.ResponseWriter, r *http.Request) error {
	if s.advisor == nil {
		return v1.Unavailable("this server keeps no traffic history: no advice")
	}
	env := r.PathValue("env")
	if err := s.existingEnvironment(r.Context(), env); err != nil {
		return err
	}
	q, err := v1.ParseAdviceQuery(r.URL.Query())
	if err != nil {
		return err
	}
	a, err := s.advisor.Advice(r.Context(), env, r.PathValue("name"), q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// convert is POST /api/v1/environments/{env}/{services|functions}/{name}/convert.
func (s *Server) convert(from string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.converter == nil {
			return v1.Unavailable("conversions are not available on this server")
		}
		body, err := s.readBody(w, r, s.maxBody)
		if err != nil {
			return err
		}
		var req v1.ConvertRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return v1.Invalid("convert request: %v", err)
		}
		res, err := s.converter.Convert(r.Context(), admission{s}, from, r.PathValue("env"), r.PathValue("name"), req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
}

// admission lets a conversion read and write workloads through this
// server's admission, as an apply does.
type admission struct{ s *Server }

var _ convert.Objects = admission{}

func (o admission) Get(ctx context.Context, kind, env, name string) (v1.Object, error) {
	res, ok := byKind(kind)
	if !ok {
		return nil, v1.Invalid("unknown kind %q", kind)
	}
	return o.s.load(ctx, res, env, name)
}

func (o admission) Apply(ctx context.Context, obj v1.Object) (v1.Object, error) {
	res, ok := byKind(obj.GetTypeMeta().Kind)
	if !ok {
		return nil, v1.Invalid("unknown kind %q", obj.GetTypeMeta().Kind)
	}
	md := obj.GetMetadata()
	expect, err := o.s.admit(ctx, obj, res, md.Environment, md.Name, false)
	if err != nil {
		return nil, err
	}
	_, out, err := o.s.store1(ctx, obj, res, expect, false)
	return out, err
}

func (o admission) Delete(ctx context.Context, kind, env, name string) error {
	obj, err := o.Get(ctx, kind, env, name)
	if err != nil {
		return err
	}
	return store.Delete(ctx, o.s.store, obj)
}
