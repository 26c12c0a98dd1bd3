package otelcancel

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Prometheus is a MeterProvider whose metrics are served in the Prometheus
// exposition format, with the Go runtime and process collectors beside
// them. Give MeterProvider to New (or set it as the global provider) and
// serve Handler at /metrics.
type Prometheus struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	handler  http.Handler
}

// NewPrometheus returns a Prometheus exposition of a new MeterProvider,
// made with opts (a resource, views) and a reader that feeds a new
// client_golang registry. Metric names follow Prometheus conventions: base
// units as suffixes, counters ending in _total.
func NewPrometheus(opts ...sdkmetric.Option) (*Prometheus, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("otelcancel: Prometheus exporter: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("otelcancel: Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("otelcancel: process collector: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(exporter)}, opts...)...)
	return &Prometheus{
		provider: provider,
		registry: reg,
		// OpenMetrics when the scraper asks for it: that format carries
		// the exemplars linking latency buckets to traces.
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}),
	}, nil
}

// MeterProvider returns the provider whose metrics Handler serves.
func (p *Prometheus) MeterProvider() *sdkmetric.MeterProvider { return p.provider }

// Registry returns the client_golang registry behind Handler, for
// collectors of your own.
func (p *Prometheus) Registry() *prometheus.Registry { return p.registry }

// Handler serves the metrics, for /metrics.
func (p *Prometheus) Handler() http.Handler { return p.handler }

// Shutdown shuts the MeterProvider down.
func (p *Prometheus) Shutdown(ctx context.Context) error { return p.provider.Shutdown(ctx) }
