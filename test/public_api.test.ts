/**
 * The package's public API (src/index.ts, as built into dist/index.d.ts, the only entry the exports map allows):
 * every type that an exported function, class or type names in its signature is itself exported, so a user can
 * write down the types of what they pass and get back (e.g. `loadRuntime` -> GenerationRuntime, `runShapeEval`
 * -> ShapeEvalOptions, ShapeEvalReport). Only the internals listed in OPAQUE stay unexported; they are reachable
 * as property types, and the check does not look inside them. Training internals are not exported.
 */
import * as path from 'path';
import * as ts from 'typescript';

const DIST = path.resolve(__dirname, '..', 'dist');

/** Internal types the public API references but deliberately does not export; the check stops at them. */
const OPAQUE: Record<string, string> = {
  LlamaDecoder: "Janus4o's submodules (model.llm, .gen, .aligner, .siglip, .vq): model internals",
  GenerationModules: 'Janus4o submodule',
  MlpProjector: 'Janus4o submodule',
  SiglipEncoder: 'Janus4o submodule',
  VQModel: 'Janus4o submodule',
  DataParallel: "Trainer's data-parallel internals",
  Communicator: 'collectives of the distributed launcher',
  ShardPlan: "AdamW's ZeRO-1 shard plan",
  ExportedOptimizerState: 'the optimizer-state storage format',
  OptimizerStateSource: 'the optimizer-state storage format',
  TensorFileReader: 'checkpoint file I/O',
  TensorWriteSource: 'checkpoint file I/O',
  WordLevelJson: 'the parsed tokenizer.json of WordTokenizer (not exported by its module)',
  RecordBase: 'common fields of T2IRecord and EditRecord (not exported by its module)',
  ShardRecordMeta: 'per-record shard metadata (not exported by its module)',
};

interface ApiModel {
  names: Set<string>;
  /** Project types reachable from the exports' signatures that index.d.ts does not export: "Name (file) <- user". */
  unexported: string[];
}

function apiModel(): ApiModel {
  const entry = path.join(DIST, 'index.d.ts');
  const program = ts.createProgram([entry], { strict: true, skipLibCheck: true, noEmit: true, types: [] });
  const checker = program.getTypeChecker();
  const mod = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
  const resolve = (s: ts.Symbol | undefined): ts.Symbol | undefined => (s && s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const exportSymbols = checker.getExportsOfModule(mod);
  const exported = new Set(exportSymbols.map((s) => resolve(s)!));
  const exportedByName = new Map(exportSymbols.map((s) => [s.name, resolve(s)!]));
  const inProject = (d: ts.Declaration) => path.resolve(d.getSourceFile().fileName).startsWith(DIST + path.sep);
  const typeText = (s: ts.Symbol) => checker.typeToString(checker.getDeclaredTypeOfSymbol(s), undefined, ts.TypeFormatFlags.NoTruncation);
  // A second declaration of an exported type under the same name (e.g. EditCategory in edits.ts and shapeeval.ts) is fine when the types are equal.
  const sameAsExported = (s: ts.Symbol) => {
    const e = exportedByName.get(s.name);
    return e !== undefined && typeText(e) === typeText(s);
  };
  const seen = new Map<string, Set<string>>();
  const isPrivate = (n: ts.Node) => ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.PrivateKeyword);
  const visit = (node: ts.Node, from: string): void => {
    if (isPrivate(node)) return;
    let sym: ts.Symbol | undefined;
    if (ts.isTypeReferenceNode(node)) sym = checker.getSymbolAtLocation(node.typeName);
    else if (ts.isExpressionWithTypeArguments(node)) sym = checker.getSymbolAtLocation(node.expression);
    else if (ts.isImportTypeNode(node) && !node.isTypeOf) {
      const t = checker.getTypeFromTypeNode(node);
      sym = t.aliasSymbol ?? t.getSymbol();
    }
    sym = resolve(sym);
    if (sym && !(sym.flags & ts.SymbolFlags.TypeParameter) && (sym.declarations ?? []).some(inProject) && !exported.has(sym) && !sameAsExported(sym)) {
      const key = `${sym.name} (${path.relative(DIST, sym.declarations![0].getSourceFile().fileName)})`;
      if (!seen.has(key)) {
        seen.set(key, new Set());
        if (!(sym.name in OPAQUE)) for (const d of sym.declarations!) ts.forEachChild(d, (c) => visit(c, key));
      }
      seen.get(key)!.add(from);
    }
    ts.forEachChild(node, (c) => visit(c, from));
  };
  for (const s of exported) for (const d of s.declarations ?? []) if (!ts.isSourceFile(d)) visit(d, s.name);
  const unexported = [...seen].filter(([k]) => !(k.split(' ')[0] in OPAQUE)).map(([k, users]) => `${k} <- ${[...users].join(', ')}`);
  return { names: new Set(exportSymbols.map((s) => s.name)), unexported };
}

describe('public API', () => {
  let api: ApiModel;
  beforeAll(() => {
    api = apiModel();
  });

  test('every type a public signature names is exported (or listed as an opaque internal)', () => {
    expect(api.unexported).toEqual([]);
  });

  test('generation and ShapeEval: what callers of loadRuntime / runShapeEval need is exported', () => {
    const needed = [
      'loadRuntime', 'GenerationRuntime', 'runtimeFromModel', 'loadImagePixels', 'imagesToPngs',
      'generateT2I', 'generateEdits', 'SamplingOptions', 'SamplingProgress', 'SamplingStats', 'T2IJob', 'EditJob', 'ImageTokenModel',
      'guideLogits', 'guideT2I', 'guideEdit', 'GuidanceMode', 'GuidanceWeights', 'sampleToken', 'DrawOptions', 'makeRng', 'Rng',
      'runShapeEval', 'modelGenerator', 'ShapeEvalGenerator', 'ShapeEvalOptions', 'ShapeEvalReport', 'renderScene', 'Scene',
      'shapeworldTrainingScenes', 'datasetSceneKeys', 'sceneKey', 'readGenerationConfig', 'GenerationDefaults', 'BackendLogger',
    ];
    expect(needed.filter((n) => !api.names.has(n))).toEqual([]);
  });

  test('internals are not exported', () => {
    expect(['layoutSample', 'editRowVariant', 'checkpointShape'].filter((n) => api.names.has(n))).toEqual([]);
  });
});
