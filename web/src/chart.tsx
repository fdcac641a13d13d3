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
  const series = names.slice(0, 20).map((n) => xs.map((x) => points.get(n)!.get(x) ?? null))
  return { xs, series, names: names.slice(0, 20), times, categories }
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
    const opts: uPlot.Options = {
      width: el.current.clientWidth || 800,
      height,
      scales: { x: { time: d.times } },
      axes: [
        d.categories.length > 0
          ? { values: (_u, ticks) => ticks.map((t) => d.categories[Math.round(t)] ?? '') , space: 60 }
          : {},
        {},
      ],
      series: [
        { label: spec.x },
        ...d.names.map((n, i) => ({
          label: n,
          stroke: palette[i % palette.length],
          fill: spec.kind === 'line' ? undefined : palette[i % palette.length] + (spec.kind === 'bar' ? 'cc' : '33'),
          paths: bars,
          points: { show: spec.kind === 'line' && d.xs.length < 60 },
        })),
      ],
    }
    const plot = new uPlot(opts, [d.xs, ...d.series] as uPlot.AlignedData, el.current)
    const resize = () => plot.setSize({ width: el.current?.clientWidth || 800, height })
    window.addEventListener('resize', resize)
    return () => {
      window.removeEventListener('resize', resize)
      plot.destroy()
    }
  }, [columns, rows, spec.kind, spec.x, spec.y, spec.series, height])
  return <div class="chart" ref={el} data-testid="chart" />
}
