import { t } from "../i18n";

/** The chart's title, saying how many query rows the means read when the server sampled them
 * (a long run's head statistics come from evenly spaced queries; queries are 1..T−1). */
export function sampledTitle(key: "chart.head_entropy" | "chart.head_health", used: number, length: number): string {
  const queries = Math.max(0, length - 1);
  if (used >= queries) return t(key);
  const fmt = (n: number) => n.toLocaleString("en-US");
  return t(`${key}_sampled`, { n: fmt(used), of: fmt(queries) });
}
