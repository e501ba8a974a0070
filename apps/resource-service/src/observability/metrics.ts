// Registered before anything else in main.ts, as an app's telemetry setup is: the library's
// clients and transports report into this MeterProvider, and GET /metrics serves it to Prometheus.
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/** Renders the metrics in Prometheus's text format on a request; no server of its own. */
export const prometheus = new PrometheusExporter({ preventServerStart: true });

metrics.setGlobalMeterProvider(new MeterProvider({ readers: [prometheus] }));
