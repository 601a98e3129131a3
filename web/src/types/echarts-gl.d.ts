declare module "echarts-gl";
