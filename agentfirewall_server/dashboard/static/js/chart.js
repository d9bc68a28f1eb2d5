// A small stacked bar chart drawn as inline SVG: requests per hour by decision.
import { setText } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
export const SERIES = [
  { key: "allow", label: "allow", cls: "bar-allow" },
  { key: "require_approval", label: "require approval", cls: "bar-hold" },
  { key: "deny", label: "deny", cls: "bar-deny" },
];

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// GET /api/v1/stats/hourly's hours (counted by the server, every request of each hour) →
// the chart's buckets: both sources added up, a kill switch's refusals counted as denies.
export function fromHourly(hours) {
  return hours.map(({ start, sdk, proxy }) => ({
    start: Date.parse(start),
    allow: sdk.allow + proxy.allow,
    require_approval: sdk.require_approval + proxy.require_approval,
    deny: sdk.deny + proxy.deny + proxy.killed,
  }));
}

export function drawChart(container, buckets) {
  // Drawn at the container's own width so text keeps its size on every screen.
  const width = Math.max(280, Math.round(container.clientWidth || 720)), height = 180, pad = 24;
  const max = Math.max(1, ...buckets.map((b) => b.allow + b.deny + b.require_approval));
  const barWidth = (width - pad * 2) / buckets.length;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart-svg", "aria-hidden": "true" });
  root.append(svg("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis" }));
  const top = svg("text", { x: 2, y: pad - 6, class: "tick" });
  setText(top, max);
  root.append(top);
  buckets.forEach((bucket, i) => {
    let y = height - pad;
    for (const series of SERIES) {
      const h = ((height - pad * 2) * bucket[series.key]) / max;
      if (h <= 0) continue;
      y -= h;
      const rect = svg("rect", { x: pad + i * barWidth + 1, y, width: Math.max(1, barWidth - 2), height: h, class: series.cls });
      const title = svg("title", {});
      setText(title, `${new Date(bucket.start).getHours()}:00 — ${bucket[series.key]} ${series.label}`);
      rect.append(title);
      root.append(rect);
    }
    if (i % (width < 500 ? 8 : 4) === 0) {
      const tick = svg("text", { x: pad + i * barWidth, y: height - 6, class: "tick" });
      setText(tick, `${String(new Date(bucket.start).getHours()).padStart(2, "0")}:00`);
      root.append(tick);
    }
  });
  container.replaceChildren(root);
}
