/** echarts-gl is big (600 kB): load it the first time a 3D chart is drawn. */
let gl: Promise<unknown> | null = null;

export function loadGl(): Promise<unknown> {
  gl ??= import("echarts-gl");
  return gl;
}
