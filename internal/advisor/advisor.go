package advisor

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/history"
)

// Defaults of the Advisor.
const (
	DefaultSince      = 7 * 24 * time.Hour
	DefaultMinHistory = time.Hour
)

// WorkloadSource reads Services and Functions from the caches.
type WorkloadSource interface {
	// Workload is env/name, false when there is none.
	Workload(env, name string) (Workload, bool)
	// Workloads are every Service and Function of env.
	Workloads(env string) []Workload
}

// HistorySource is what the advisor reads of the history (*history.DB).
type HistorySource interface {
	Range(env, name string, from, to time.Time) ([]history.Minute, error)
	Image(digest string) (history.ImageStats, error)
}

// Config builds an Advisor.
type Config struct {
	History   HistorySource
	Workloads WorkloadSource
	// Prices is the sheet used when a request brings none (DefaultPrices).
	Prices *v1.PriceSheet
	// MinHistory is the recorded history advice needs (DefaultMinHistory).
	MinHistory time.Duration
	// MaxSince bounds the look-back: the history's retention.
	MaxSince time.Duration
	Clock    func() time.Time
	Logger   *slog.Logger
}

// Advisor answers the advice endpoints from the history. It reads; it
// never changes a workload.
type Advisor struct {
	cfg Config
	log *slog.Logger
}

// New returns an Advisor.
func New(cfg Config) (*Advisor, error) {
	if cfg.Prices == nil {
		p := DefaultPrices()
		cfg.Prices = &p
	}
	if err := cfg.Prices.Validate(); err != nil {
		return nil, fmt.Errorf("price sheet: %w", err)
	}
	if cfg.MinHistory <= 0 {
		cfg.MinHistory = DefaultMinHistory
	}
	if cfg.MaxSince <= 0 {
		cfg.MaxSince = history.DefaultRetention
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Advisor{cfg: cfg, log: cfg.Logger}, nil
}

// Prices is the server's price sheet.
func (a *Advisor) Prices() v1.PriceSheet { return *a.cfg.Prices }

// window is the history replayed: whole minutes up to the current one.
func (a *Advisor) window(q v1.AdviceQuery) (from, to time.Time, since time.Duration, err error) {
	since = q.Since
	if since == 0 {
		since = DefaultSince
	}
	if since > a.cfg.MaxSince {
		return from, to, since, v1.FieldError("since", "%s is more than the %s of history kept", v1.FormatSince(since), v1.FormatSince(a.cfg.MaxSince))
	}
	to = a.cfg.Clock().UTC().Truncate(time.Minute)
	return to.Add(-since), to, since, nil
}

func (a *Advisor) input(w Workload, q v1.AdviceQuery, from, to time.Time, alternatives bool) (Input, error) {
	ms, err := a.cfg.History.Range(w.Environment, w.Name, from, to)
	if err != nil {
		return Input{}, fmt.Errorf("read history of %s: %w", w.Name, err)
	}
	ms, from = sinceConverted(ms, w.Kind, from)
	var covered int
	for _, m := range ms {
		covered += m.Covered
	}
	need := a.cfg.MinHistory
	if have := time.Duration(covered) * time.Second; have < need {
		msg := fmt.Sprintf("%s %s has %s of recorded traffic history in the last %s; advice needs at least %s",
			strings.ToLower(w.Kind), w.Name, roundWords(have), v1.FormatSince(to.Sub(from)), roundWords(need))
		if len(ms) > 0 {
			msg += fmt.Sprintf(" (recorded since %s; ask again after %s)", ms[0].At.Format(time.RFC3339), to.Add(need-have).Format(time.RFC3339))
		}
		return Input{}, v1.Unavailable("%s", msg)
	}
	var img history.ImageStats
	if w.ImageDigest != "" {
		if img, err = a.cfg.History.Image(w.ImageDigest); err != nil {
			return Input{}, err
		}
	}
	prices := *a.cfg.Prices
	if q.Prices != nil {
		prices = *q.Prices
	}
	return Input{
		Workload: w, Minutes: ms, From: from, To: to, Image: img, Prices: prices,
		Settings: Settings{
			Concurrency: q.Concurrency, Min: q.Min, Max: q.Max, IdleTimeout: q.IdleTimeout,
			Replicas: q.Replicas, MaxAddedP99: q.MaxAddedP99, Points: q.Points,
			Alternatives: alternatives,
		},
	}, nil
}

// Advice is the advice for one workload, with the alternatives.
func (a *Advisor) Advice(ctx context.Context, env, name string, q v1.AdviceQuery) (v1.Advice, error) {
	from, to, _, err := a.window(q)
	if err != nil {
		return v1.Advice{}, err
	}
	w, ok := a.cfg.Workloads.Workload(env, name)
	if !ok {
		return v1.Advice{}, v1.NotFound("no Service or Function %q in environment %q", name, env)
	}
	in, err := a.input(w, q, from, to, true)
	if err != nil {
		return v1.Advice{}, err
	}
	if err := ctx.Err(); err != nil {
		return v1.Advice{}, err
	}
	return Advise(in)
}

// List is the advice for every workload of env (without alternatives,
// to keep it quick), and why some have none.
func (a *Advisor) List(ctx context.Context, env string, q v1.AdviceQuery) (v1.AdviceList, error) {
	from, to, since, err := a.window(q)
	if err != nil {
		return v1.AdviceList{}, err
	}
	ws := a.cfg.Workloads.Workloads(env)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	items := make([]*v1.Advice, len(ws))
	skips := make([]*v1.AdviceSkip, len(ws))
	errs := make([]error, len(ws))
	parallel(len(ws), func(i int) {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			return
		}
		in, err := a.input(ws[i], q, from, to, false)
		if err == nil {
			var adv v1.Advice
			if adv, err = Advise(in); err == nil {
				items[i] = &adv
				return
			}
		}
		if v1.KindOf(err) == v1.ErrUnavailable {
			skips[i] = &v1.AdviceSkip{Name: ws[i].Name, RunsAs: ws[i].Kind, Reason: err.Error()}
			return
		}
		errs[i] = err
	})
	out := v1.AdviceList{APIVersion: v1.APIVersion, Kind: "AdviceList", Items: []v1.Advice{}, Since: since, Prices: *a.cfg.Prices}
	if q.Prices != nil {
		out.Prices = *q.Prices
	}
	for i := range ws {
		switch {
		case errs[i] != nil:
			return v1.AdviceList{}, errs[i]
		case items[i] != nil:
			out.Items = append(out.Items, *items[i])
		case skips[i] != nil:
			out.Skipped = append(out.Skipped, *skips[i])
		}
	}
	return out, nil
}

// sinceConverted keeps the minutes since the workload last ran only the
// other way (before a conversion): "how it ran" is then how it runs now.
func sinceConverted(ms []history.Minute, kind string, from time.Time) ([]history.Minute, time.Time) {
	bit := history.RanAsService
	if kind == v1.KindFunction {
		bit = history.RanAsFunction
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Kinds != 0 && ms[i].Kinds&bit == 0 {
			return ms[i+1:], ms[i].At.Add(time.Minute)
		}
	}
	return ms, from
}

// roundWords writes a span of history the way a person says it.
func roundWords(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%.0f hours", d.Hours())
	case d >= 2*time.Minute:
		return fmt.Sprintf("%.0f minutes", d.Minutes())
	case d == time.Minute:
		return "1 minute"
	}
	return d.Round(time.Second).String()
}
