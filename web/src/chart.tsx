// A chart of a query's result: x, y and optionally a series column picked
// from its columns, drawn as lines, bars or areas with uPlot.
import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export type ChartKind = 'line' | 'bar' | 'area'

export interface ChartSpec {
  kind: ChartKind
  x: string
  y: string
  series?: string
}

const palette = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563', '#65a30d', '#ea580c']

function asTime(v: unknown): number | null {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(v)) return null
  const t = Date.parse(v.length === 10 ? v + 'T00:00:00Z' : v.replace(' ', 'T') + (/[Z+]/.test(v.slice(19)) ? '' : 'Z'))
  return Number.isNaN(t) ? null : t / 1000
}

// chartData turns rows into uPlot's columns: the x values (times, numbers,
// or the positions of categories) and a y series per series value.
export function chartData(columns: string[], rows: unknown[][], spec: ChartSpec) {
  const xi = columns.indexOf(spec.x)
  const yi = columns.indexOf(spec.y)
  const si = spec.series ? columns.indexOf(spec.series) : -1
  if (xi < 0 || yi < 0) return null
  const times = rows.every((r) => r[xi] === null || asTime(r[xi]) !== null)
  const numeric = !times && rows.every((r) => typeof r[xi] === 'number')
  const categories: string[] = []
  const xOf = (v: unknown): number => {
    if (times) return asTime(v) ?? 0
    if (numeric) return v as number
    const s = String(v)
    let i = categories.indexOf(s)
    if (i < 0) {
      categories.push(s)
      i = categories.length - 1
    }
    return i
  }
  const xs: number[] = []
  const names: string[] = []
  const points = new Map<string, Map<number, number | null>>()
  for (const r of rows) {
    const x = xOf(r[xi])
    if (!xs.includes(x)) xs.push(x)
    const name = si >= 0 ? String(r[si]) : spec.y
    if (!points.has(name)) {
      points.set(name, new Map())
      names.push(name)
    }
    const y = r[yi]
    points.get(name)!.set(x, typeof y === 'number' ? y : y === null ? null : Number(y))
  }
  xs.sort((a, b) => a - b)
  const shown = names.slice(0, 20)
  let series = shown.map((n) => xs.map((x) => points.get(n)!.get(x) ?? null))
  const stacked = spec.kind !== 'line' && series.length > 1
  if (stacked) {
    // Each series is drawn as the sum of it and those before it, the
    // largest first, so every bar or area shows its own part of the total.
    const sums = xs.map(() => 0)
    series = series.map((ys) => ys.map((y, i) => (sums[i] += y ?? 0)))
  }
  return { xs, series, names: shown, times, categories, stacked }
}

export function Chart({ columns, rows, spec, height = 320 }: { columns: string[]; rows: unknown[][]; spec: ChartSpec; height?: number }) {
  const el = useRef<HTMLDivElement>(null)
  useEffect(() => {
    if (!el.current) return
    const d = chartData(columns, rows, spec)
    if (!d || d.xs.length === 0) {
      el.current.textContent = 'Pick x and y columns of a result with rows to draw it.'
      return
    }
    el.current.textContent = ''
    const bars = spec.kind === 'bar' ? uPlot.paths.bars!({ size: [0.6, 64] }) : undefined
    // Drawn last first, so that a stack's lower parts cover the sums.
    const order = d.stacked ? d.names.map((_, i) => d.names.length - 1 - i) : d.names.map((_, i) => i)
    const step = d.xs.length > 1 ? Math.min(...d.xs.slice(1).map((x, i) => x - d.xs[i])) : d.times ? 60 : 1
    const opts: uPlot.Options = {
      width: el.current.clientWidth || 800,
      height,
      scales: {
        // One x value: uPlot would span a day of it (in its units, 1,000
        // days of seconds); a bucket's width either side instead.
        x: { time: d.times, range: (_u, min, max) => (d.xs.length === 1 ? [d.xs[0] - step, d.xs[0] + step] : [min - step / 2, max + step / 2]) },
        y: { range: (_u, min, max) => (spec.kind === 'line' ? [min, max === min ? max + 1 : max] : [Math.min(0, min), max > 0 ? max * 1.05 : 1]) },
      },
      axes: [
        d.categories.length > 0
          ? { values: (_u, ticks) => ticks.map((t) => d.categories[Math.round(t)] ?? '') , space: 60 }
          : {},
        { size: 64 },
      ],
      series: [
        { label: spec.x },
        ...order.map((i) => ({
          label: d.names[i] + (d.stacked ? ' (stacked)' : ''),
          stroke: palette[i % palette.length],
          fill: spec.kind === 'line' ? undefined : palette[i % palette.length] + (spec.kind === 'bar' ? 'ee' : '55'),
          paths: bars,
          points: { show: spec.kind === 'line' && d.xs.length < 60 },
        })),
      ],
    }
    const plot = new uPlot(opts, [d.xs, ...order.map((i) => d.series[i])] as uPlot.AlignedData, el.current)
    const resize = () => plot.setSize({ width: el.current?.clientWidth || 800, height })
    window.addEventListener('resize', resize)
    return () => {
      window.removeEventListener('resize', resize)
      plot.destroy()
    }
  }, [columns, rows, spec.kind, spec.x, spec.y, spec.series, height])
  return <div class="chart" ref={el} data-testid="chart" />
}
