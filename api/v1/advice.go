package v1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Advice answers "which is best for this workload": how it ran, how it
// would have run the other way over the same recorded traffic, the money
// both ways, and a recommendation. It is the answer of
// GET /api/v1/environments/{env}/advice/{name}; computing it changes
// nothing (POST .../convert does).
type Advice struct {
	APIVersion  string `json:"apiVersion"`
	Kind        string `json:"kind"` // "Advice"
	Environment string `json:"environment"`
	Name        string `json:"name"`
	// RunsAs is how the workload runs now: Service or Function.
	RunsAs string `json:"runsAs"`
	// From and To bound the history replayed; Minutes is how many minutes
	// of it were recorded (the server was down for the rest).
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Minutes int       `json:"minutes"`

	Traffic AdviceTraffic `json:"traffic"`
	// Current is how it ran, measured. Other is how it would have run the
	// other way, replayed.
	Current AdviceWay `json:"current"`
	Other   AdviceWay `json:"other"`
	// Model is the current way replayed through the same model, when the
	// workload runs as a Function: set beside Current, it shows how far
	// the model is from what was measured on this very workload.
	Model *AdviceWay `json:"model,omitempty"`
	// ColdStart is the cold start the replay used and where it comes from.
	ColdStart AdviceColdStart `json:"coldStart"`
	Prices    PriceSheet      `json:"prices"`

	// Recommend is Service or Function; Switch is true when that is not
	// how it runs now.
	Recommend string `json:"recommend"`
	Switch    bool   `json:"switch"`
	// Reason is one sentence: the recommendation and why.
	Reason string `json:"reason"`
	// WouldChange says what setting (or traffic) would change the answer.
	WouldChange string `json:"wouldChange,omitempty"`
	// Alternatives are the Function way replayed with other settings.
	Alternatives []AdviceAlternative `json:"alternatives,omitempty"`
	// Convert is the command that switches the workload with the settings
	// the Other way was replayed with.
	Convert string `json:"convert"`
	// Series, when asked for, is traffic and instances over time, both
	// ways, for a chart.
	Series *AdviceSeries `json:"series,omitempty"`
}

// AdviceTraffic is what the recorded traffic looked like.
type AdviceTraffic struct {
	Requests       int64   `json:"requests"`
	RequestsPerDay float64 `json:"requestsPerDay"`
	Errors         int64   `json:"errors"`
	// IdleShare is the share of recorded seconds with no request in
	// flight and none arriving.
	IdleShare float64 `json:"idleShare"`
	// MeanInFlight is the mean concurrency; PeakInFlight the largest
	// in-flight count sampled.
	MeanInFlight float64 `json:"meanInFlight"`
	PeakInFlight int     `json:"peakInFlight"`
	// Durations at the gateway, cold-start waits included.
	DurationP50MS  float64 `json:"durationP50Ms"`
	DurationP99MS  float64 `json:"durationP99Ms"`
	MeanDurationMS float64 `json:"meanDurationMs"`
	// CPUMillicores and MemoryMiB are the mean measured usage of one
	// running instance.
	CPUMillicores float64 `json:"cpuMillicores"`
	MemoryMiB     float64 `json:"memoryMiB"`
}

// AdviceWay is one way of running the workload over the replayed time.
type AdviceWay struct {
	Kind string `json:"kind"` // Service or Function
	// Measured is true for figures measured, false for replayed ones.
	Measured bool `json:"measured"`
	// Settings says how it runs, in words ("2 replicas", "concurrency 1,
	// min 0, max 10, idle timeout 1m0s").
	Settings    string `json:"settings"`
	Replicas    int32  `json:"replicas,omitempty"`
	Concurrency int32  `json:"concurrency,omitempty"`
	Min         *int32 `json:"min,omitempty"`
	Max         int32  `json:"max,omitempty"`
	IdleTimeout string `json:"idleTimeout,omitempty"`
	// CPU and Memory are one instance's limits, which the prices apply to.
	CPU    string `json:"cpu"`
	Memory string `json:"memory"`

	InstanceSeconds     float64 `json:"instanceSeconds"`
	InstanceHoursPerDay float64 `json:"instanceHoursPerDay"`
	MeanInstances       float64 `json:"meanInstances"`
	MaxInstances        int     `json:"maxInstances"`
	MemoryGBSeconds     float64 `json:"memoryGBSeconds"`
	// ColdStarts are requests held while the function started from zero.
	ColdStarts       float64 `json:"coldStarts"`
	ColdStartsPerDay float64 `json:"coldStartsPerDay"`
	// AddedLatency is the wait cold starts and a full function add to
	// requests, at the median and the 99th percentile of all requests.
	AddedLatencyP50MS float64 `json:"addedLatencyP50Ms"`
	AddedLatencyP99MS float64 `json:"addedLatencyP99Ms"`
	// Waited are requests that waited for a free instance; Shed those
	// refused after waiting too long. Not measured for the current way
	// (Measured true): zero there.
	Waited float64 `json:"waited"`
	Shed   float64 `json:"shed"`
	// Cost is the money over the replayed time at Prices; CostPerDay the
	// same per day of recorded history.
	Cost       float64 `json:"cost"`
	CostPerDay float64 `json:"costPerDay"`
}

// AdviceColdStart is the cold start the replay used.
type AdviceColdStart struct {
	MS float64 `json:"ms"`
	// StartMS is a further instance's start when scaling out.
	StartMS float64 `json:"startMs"`
	// Source says where it was measured, or that it was assumed.
	Source string `json:"source"`
}

// AdviceAlternative is the Function way with one setting changed.
type AdviceAlternative struct {
	Setting string    `json:"setting"`
	Way     AdviceWay `json:"way"`
	// Recommend is what the advice would be with this setting.
	Recommend string `json:"recommend"`
}

// AdviceSeries is the history in Points buckets of Step each, from Start.
type AdviceSeries struct {
	Start time.Time     `json:"start"`
	Step  time.Duration `json:"stepNs"`
	// Requests per bucket; Current and Other the mean instances of each
	// way in it; Recorded the share of the bucket the history covers.
	Requests []float64 `json:"requests"`
	Current  []float64 `json:"current"`
	Other    []float64 `json:"other"`
	Recorded []float64 `json:"recorded"`
}

// AdviceList is the answer of GET /api/v1/environments/{env}/advice: one
// Advice per workload with enough history, and why the others have none.
type AdviceList struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"` // "AdviceList"
	Items      []Advice      `json:"items"`
	Skipped    []AdviceSkip  `json:"skipped,omitempty"`
	Prices     PriceSheet    `json:"prices"`
	Since      time.Duration `json:"sinceNs"`
}

// AdviceSkip is a workload the advisor had nothing to say about.
type AdviceSkip struct {
	Name   string `json:"name"`
	RunsAs string `json:"runsAs"`
	Reason string `json:"reason"`
}

// ConvertRequest is the body of POST
// /api/v1/environments/{env}/{services|functions}/{name}/convert.
type ConvertRequest struct {
	// To is Function or Service.
	To string `json:"to"`
	// For a Function: its concurrency and scale (unset: the defaults).
	Concurrency *int32 `json:"concurrency,omitempty"`
	Min         *int32 `json:"min,omitempty"`
	Max         *int32 `json:"max,omitempty"`
	IdleTimeout string `json:"idleTimeout,omitempty"`
	// For a Service: its replicas (unset: the function's ready instances,
	// at least its min and at least 1).
	Replicas *int32 `json:"replicas,omitempty"`
	// Timeout bounds the wait for the new one to be ready and routed, a Go
	// duration (default 2m). Past it the new one is removed and the old
	// one keeps running.
	Timeout string `json:"timeout,omitempty"`
}

// ConvertResult is the answer of a conversion.
type ConvertResult struct {
	From string `json:"from"` // the kind it was
	To   string `json:"to"`
	// Object is the new Service or Function as stored.
	Object any `json:"object"`
	// Steps say what was done, in order, with the time since the start.
	Steps []string `json:"steps"`
}

// PriceSheet prices the two ways of running a workload. Every price must
// be set (0 is a price); none may be negative.
type PriceSheet struct {
	// Name and Date say whose prices and when they were read.
	Name     string `json:"name" yaml:"name"`
	Date     string `json:"date" yaml:"date"`
	Currency string `json:"currency" yaml:"currency"`
	Function Prices `json:"function" yaml:"function"`
	Service  Prices `json:"service" yaml:"service"`
}

// Prices of one way: per request, per GB-second of request time (as
// Lambda bills), and per vCPU-hour and GB-hour of instance time (as
// Fargate bills).
type Prices struct {
	PerRequest  *float64 `json:"perRequest" yaml:"perRequest"`
	PerGBSecond *float64 `json:"perGBSecond" yaml:"perGBSecond"`
	PerVCPUHour *float64 `json:"perVCPUHour" yaml:"perVCPUHour"`
	PerGBHour   *float64 `json:"perGBHour" yaml:"perGBHour"`
}

// PriceFields are a side's prices by the name they have in a sheet, for
// query parameters and error messages.
func (p *Prices) PriceFields() map[string]**float64 {
	return map[string]**float64{
		"perRequest": &p.PerRequest, "perGBSecond": &p.PerGBSecond,
		"perVCPUHour": &p.PerVCPUHour, "perGBHour": &p.PerGBHour,
	}
}

// Validate reports missing and negative prices, every one of them.
func (s PriceSheet) Validate() error {
	var problems []string
	for _, side := range []struct {
		name string
		p    Prices
	}{{"function", s.Function}, {"service", s.Service}} {
		fields := side.p.PriceFields()
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v := *fields[n]
			switch {
			case v == nil:
				problems = append(problems, fmt.Sprintf("%s.%s is missing (write 0 if it costs nothing)", side.name, n))
			case *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0):
				problems = append(problems, fmt.Sprintf("%s.%s is %v: a price must be a number of 0 or more", side.name, n, *v))
			}
		}
	}
	if len(problems) > 0 {
		return FieldError("prices", "%s", strings.Join(problems, "; "))
	}
	return nil
}

// ParsePriceSheet reads a price sheet in YAML (or JSON); unknown fields
// are errors, and so are missing or negative prices.
func ParsePriceSheet(data []byte) (PriceSheet, error) {
	var s PriceSheet
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return PriceSheet{}, Invalid("price sheet: empty; it needs function and service prices")
		}
		return PriceSheet{}, Invalid("price sheet: %v", err)
	}
	if s.Currency == "" {
		s.Currency = "USD"
	}
	if err := s.Validate(); err != nil {
		return PriceSheet{}, err
	}
	return s, nil
}

// AdviceQuery is what GET .../advice takes, as query parameters: the
// client writes them with Values and the server reads them with
// ParseAdviceQuery, so the two agree.
type AdviceQuery struct {
	// Since is how far back the history is replayed (default 7 days).
	Since time.Duration
	// Prices replaces the server's price sheet.
	Prices *PriceSheet
	// The other way's settings: a Function's concurrency, min, max and
	// idle timeout, a Service's replicas.
	Concurrency, Min, Max, Replicas *int32
	IdleTimeout                     time.Duration
	// MaxAddedP99 is how much a Function may add to the p99 latency.
	MaxAddedP99 time.Duration
	// Points asks for a series of that many buckets, for a chart.
	Points int
}

// Values encodes q.
func (q AdviceQuery) Values() url.Values {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", FormatSince(q.Since))
	}
	for name, p := range map[string]*int32{"concurrency": q.Concurrency, "min": q.Min, "max": q.Max, "replicas": q.Replicas} {
		if p != nil {
			v.Set(name, strconv.Itoa(int(*p)))
		}
	}
	if q.IdleTimeout > 0 {
		v.Set("idleTimeout", q.IdleTimeout.String())
	}
	if q.MaxAddedP99 > 0 {
		v.Set("maxAddedP99", q.MaxAddedP99.String())
	}
	if q.Points > 0 {
		v.Set("points", strconv.Itoa(q.Points))
	}
	if s := q.Prices; s != nil {
		v.Set("price.name", s.Name)
		v.Set("price.date", s.Date)
		v.Set("price.currency", s.Currency)
		for side, p := range map[string]*Prices{"function": &s.Function, "service": &s.Service} {
			for name, f := range p.PriceFields() {
				if *f != nil {
					v.Set("price."+side+"."+name, strconv.FormatFloat(**f, 'g', -1, 64))
				}
			}
		}
	}
	return v
}

// ParseAdviceQuery decodes what Values encodes; bad values are Invalid
// errors naming the parameter.
func ParseAdviceQuery(v url.Values) (AdviceQuery, error) {
	var q AdviceQuery
	var err error
	if s := v.Get("since"); s != "" {
		if q.Since, err = ParseSince(s); err != nil {
			return q, FieldError("since", "%v", err)
		}
	}
	ints := map[string]**int32{"concurrency": &q.Concurrency, "min": &q.Min, "max": &q.Max, "replicas": &q.Replicas}
	for name, dst := range ints {
		s := v.Get(name)
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 || (n == 0 && name != "min") {
			return q, FieldError(name, "%q is not a whole number above 0", s)
		}
		x := int32(n)
		*dst = &x
	}
	durs := map[string]*time.Duration{"idleTimeout": &q.IdleTimeout, "maxAddedP99": &q.MaxAddedP99}
	for name, dst := range durs {
		if s := v.Get(name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return q, FieldError(name, "%q is not a positive Go duration", s)
			}
			*dst = d
		}
	}
	if s := v.Get("points"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return q, FieldError("points", "%q is not a number from 1 to 10000", s)
		}
		q.Points = n
	}
	var sheet PriceSheet
	hasPrices := false
	for key := range v {
		if strings.HasPrefix(key, "price.") {
			hasPrices = true
		}
	}
	if hasPrices {
		sheet.Name, sheet.Date, sheet.Currency = v.Get("price.name"), v.Get("price.date"), v.Get("price.currency")
		if sheet.Currency == "" {
			sheet.Currency = "USD"
		}
		for side, p := range map[string]*Prices{"function": &sheet.Function, "service": &sheet.Service} {
			for name, f := range p.PriceFields() {
				s := v.Get("price." + side + "." + name)
				if s == "" {
					continue
				}
				x, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return q, FieldError("price."+side+"."+name, "%q is not a number", s)
				}
				*f = &x
			}
		}
		if err := sheet.Validate(); err != nil {
			return q, err
		}
		q.Prices = &sheet
	}
	return q, nil
}

// ParseSince reads a look-back: a Go duration, optionally after whole
// days ("7d", "1d12h", "36h", "90m").
func ParseSince(s string) (time.Duration, error) {
	var days int
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration like 7d, 36h or 90m", s)
		}
		days, rest = n, s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, fmt.Errorf("%q is not a duration like 7d, 36h or 90m", s)
		}
	}
	d += time.Duration(days) * 24 * time.Hour
	if d <= 0 {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	return d, nil
}

// FormatSince writes d as ParseSince reads it, in days when whole.
func FormatSince(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return d.String()
}
