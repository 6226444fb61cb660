package objects

import "github.com/prometheus/client_golang/prometheus"

var (
	descBytes = prometheus.NewDesc("berth_object_store_bytes",
		"Bytes an environment's object store holds (objects and parts of uploads in progress).", []string{"environment"}, nil)
	descObjects = prometheus.NewDesc("berth_object_store_objects",
		"Objects an environment's object store holds.", []string{"environment"}, nil)
	descBuckets = prometheus.NewDesc("berth_object_store_buckets",
		"Buckets of an environment's object store.", []string{"environment"}, nil)
	descQuotaBytes = prometheus.NewDesc("berth_object_store_quota_bytes",
		"An environment's quota of object store bytes (spec.quota.objectStorage), when set.", []string{"environment"}, nil)
	descQuotaObjects = prometheus.NewDesc("berth_object_store_quota_objects",
		"An environment's quota of objects (spec.quota.objects), when set.", []string{"environment"}, nil)
)

type collector struct{ s *Store }

// Collector exports each environment's usage and quota, read at scrape
// time from the store's own counts.
func (s *Store) Collector() prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBytes, descObjects, descBuckets, descQuotaBytes, descQuotaObjects} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for env, u := range c.s.Usages() {
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(u.Bytes), env)
		ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(u.Objects), env)
		ch <- prometheus.MustNewConstMetric(descBuckets, prometheus.GaugeValue, float64(u.Buckets), env)
		l := c.s.cfg.Limits(env)
		if l.Bytes > 0 {
			ch <- prometheus.MustNewConstMetric(descQuotaBytes, prometheus.GaugeValue, float64(l.Bytes), env)
		}
		if l.Objects > 0 {
			ch <- prometheus.MustNewConstMetric(descQuotaObjects, prometheus.GaugeValue, float64(l.Objects), env)
		}
	}
}
