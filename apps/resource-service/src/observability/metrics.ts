// Registered before anything else in main.ts, as an app's telemetry setup is: the library's
// clients and transports report into this MeterProvider, and GET /metrics serves it to Prometheus.
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { prometheusViews } from 'nestjs-redis-buffer';

/** Renders the metrics in Prometheus's text format on a request; no server of its own. */
export const prometheus = new PrometheusExporter({ preventServerStart: true });

metrics.setGlobalMeterProvider(
  new MeterProvider({
    // What target_info (and a collector's service_name) names this app by; unset, it is "unknown_service:node".
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME ?? 'resource-service' }),
    readers: [prometheus],
    // The duration histograms as *_seconds: this exporter does not append units itself.
    views: prometheusViews(),
  }),
);
