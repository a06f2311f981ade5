/** The training report: one self-contained HTML file plus PNGs, written by writeReport. Re-exports only. */
export { writeReport, pngSize, REPORT_FILE, ASSET_DIR } from './html';
export { readStepLog, parseStepLog, latestPerStep } from '../io/steplog';
export type {
  ReportData, RunFacts, ConfigSummary, HeldOutLoss, CategoryScore, ScoreSummary, ScoreTable, EvaluationComparison, SampleComparison, EditExample,
  ImageSource, WrittenReport, StepLog,
} from './html';
export { lineChart, niceTicks, formatTick, downsample, finitePoints, escapeXml, PALETTE } from './charts';
export type { ChartSeries, LineChartOptions } from './charts';
