package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	v1 "berth.dev/berth/api/v1"
)

// Advice is the advisor's answer for one Service or Function: how it ran,
// how it would have run the other way over the same recorded traffic, and
// which is best. It changes nothing.
func (c *Client) Advice(ctx context.Context, env, name string, q v1.AdviceQuery) (*v1.Advice, error) {
	if name == "" {
		return nil, v1.FieldError("name", "must not be empty")
	}
	var a v1.Advice
	path := "/api/v1/environments/" + url.PathEscape(env) + "/advice/" + url.PathEscape(name)
	if err := c.do(ctx, http.MethodGet, path, q.Values(), "", nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// AdviceList is the advice for every Service and Function of env, and
// why some have none (too little history).
func (c *Client) AdviceList(ctx context.Context, env string, q v1.AdviceQuery) (*v1.AdviceList, error) {
	var l v1.AdviceList
	if err := c.do(ctx, http.MethodGet, "/api/v1/environments/"+url.PathEscape(env)+"/advice", q.Values(), "", nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ConvertOutcome is a conversion's answer with the new object still raw,
// for the caller to decode as the kind it asked for.
type ConvertOutcome struct {
	From, To string
	Object   json.RawMessage
	Steps    []string
}

// Convert switches the workload of kind from named name to req.To without
// failing a request: it returns once the new one is ready and routed and
// the old one is deleted.
func (c *Client) Convert(ctx context.Context, from, env, name string, req v1.ConvertRequest) (*ConvertOutcome, error) {
	path, err := workloadPath(from, env, name)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var res struct {
		From, To string
		Object   json.RawMessage
		Steps    []string
	}
	if err := c.do(ctx, http.MethodPost, path+"/convert", nil, "application/json", bytes.NewReader(body), &res); err != nil {
		return nil, err
	}
	return &ConvertOutcome{From: res.From, To: res.To, Object: res.Object, Steps: res.Steps}, nil
}
