package web

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// advicePoints is how many buckets the advice chart asks for: enough for
// a day's shape, few enough to keep the page light.
const advicePoints = 96

type adviceData struct {
	Kind, Plural, Env, Name string
	Since                   string
	Advice                  *v1.Advice
	// Err is the API's answer when there is no advice (too little
	// history, a bad query), shown in its words.
	Err    *v1.Error
	Charts []any
}

// Cost writes money with as many digits as a small figure needs
// ("$0.51", "$0.000029"), in the sheet's currency.
func (a adviceData) Cost(v float64) string {
	cur := "USD"
	if a.Advice != nil && a.Advice.Prices.Currency != "" {
		cur = a.Advice.Prices.Currency
	}
	s := money(v)
	if cur == "USD" {
		return "$" + s
	}
	return s + " " + cur
}

func money(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 0.01:
		return fmt.Sprintf("%.2f", v)
	}
	// Two significant digits of a small amount, not in e-notation.
	digits := int(-math.Floor(math.Log10(math.Abs(v)))) + 1
	return strconv.FormatFloat(v, 'f', digits, 64)
}

// advicePage is the advisor's comparison for one Service or Function:
// GET .../advice/{name} of the API with the session's token, the page's
// query (since, the other way's settings) passed as the API reads it.
func (d *Dashboard) advicePage(r *http.Request, rq *request, v *view) (string, error) {
	env, name, plural := r.PathValue("env"), r.PathValue("name"), pluralOf(r)
	data := adviceData{Kind: pluralKind(plural), Plural: plural, Env: env, Name: name, Since: r.URL.Query().Get("since")}
	v.Title, v.Section, v.Env, v.Data = "Advice for "+name, "environments", env, &data
	v.Crumbs = []crumb{{"Environments", "/ui/environments"}, {env, "/ui/env/" + url.PathEscape(env)},
		{name, "/ui/env/" + url.PathEscape(env) + "/" + plural + "/" + url.PathEscape(name)}}
	q, err := v1.ParseAdviceQuery(r.URL.Query())
	if err == nil {
		q.Points = advicePoints
		var a *v1.Advice
		if a, err = rq.c.Advice(r.Context(), env, name, q); err == nil {
			data.Advice = a
			if a.Series != nil {
				for _, c := range adviceCharts(a) {
					data.Charts = append(data.Charts, c.SVG())
				}
			}
			return "advice", nil
		}
	}
	e := asAPIError(err)
	if e.Kind == v1.ErrUnauthorized {
		return "", err
	}
	data.Err, v.Status = e, statusOf(e.Kind)
	return "advice", nil
}

// adviceCharts are the requests and the instances of both ways over the
// window; a bucket without history is a gap, not a zero.
func adviceCharts(a *v1.Advice) []chart {
	s := a.Series
	n := len(s.Requests)
	times := make([]time.Time, n)
	reqs, cur, other := make([]float64, n), make([]float64, n), make([]float64, n)
	perMin := s.Step.Minutes()
	if perMin <= 0 {
		perMin = 1
	}
	for i := range n {
		times[i] = s.Start.Add(time.Duration(i) * s.Step)
		reqs[i], cur[i], other[i] = s.Requests[i]/perMin, at(s.Current, i), at(s.Other, i)
		if at(s.Recorded, i) == 0 {
			reqs[i], cur[i], other[i] = math.NaN(), math.NaN(), math.NaN()
		}
	}
	from := times[0].UTC().Format("01-02 15:04")
	to := a.To.UTC().Format("01-02 15:04") + " UTC"
	if n == 0 {
		from, to = "", ""
	}
	now, then := "now", "as a "
	if a.Current.Kind != "" {
		now = a.Current.Kind + " (now)"
	}
	then += a.Other.Kind
	return []chart{
		{Title: "Requests", Unit: "req/min", Times: times, From: from, To: to, Series: []chartSeries{{"requests", reqs}}},
		{Title: "Instances, both ways", Unit: "", Times: times, From: from, To: to, Series: []chartSeries{{now, cur}, {then, other}}},
	}
}

func at(vs []float64, i int) float64 {
	if i < len(vs) {
		return vs[i]
	}
	return math.NaN()
}

// wayFigures are one row of the comparison: a figure of the current way,
// the other way and, when there is one, the model of the current way.
func wayFigures(cur, other v1.AdviceWay, model *v1.AdviceWay, which string) []string {
	ways := []v1.AdviceWay{cur, other}
	if model != nil {
		ways = append(ways, *model)
	}
	out := make([]string, len(ways))
	for i, w := range ways {
		switch which {
		case "inst":
			out[i] = figure(w.InstanceSeconds)
		case "ihd":
			out[i] = fmt.Sprintf("%.1f (mean %s, max %d)", w.InstanceHoursPerDay, figure(w.MeanInstances), w.MaxInstances)
		case "gbs":
			out[i] = figure(w.MemoryGBSeconds)
		case "cold":
			out[i] = figure(w.ColdStartsPerDay)
		case "lat":
			out[i] = msString(w.AddedLatencyP50MS) + " / " + msString(w.AddedLatencyP99MS)
		case "wait":
			if w.Measured {
				out[i] = "not measured"
			} else {
				out[i] = figure(w.Waited) + " / " + figure(w.Shed)
			}
		}
	}
	return out
}

// figure writes a count or an amount short: 22 k, 316, 0.4.
func figure(v float64) string {
	if math.Abs(v) >= 10000 {
		return trimFloat(v/1000) + " k"
	}
	if v != 0 && math.Abs(v) < 0.01 {
		return "<0.01"
	}
	return trimFloat(v)
}

func msString(v float64) string { return fmt.Sprintf("%.0f ms", v) }

func percent(share float64) string {
	if share > 0.99 && share < 1 {
		return ">99 %"
	}
	return fmt.Sprintf("%.0f %%", share*100)
}
