/** The right panel's tabs, in display order. */
import type { Tab } from "../tab";
import { ActivationsTab } from "./activations";
import { AttentionTab } from "./attention";
import { AttributionTab } from "./attribution";
import { ContributionsTab } from "./contributions";
import { EmbeddingTab } from "./embedding";
import { ExpertsTab } from "./experts";
import { HeadsTab } from "./heads";
import { LayersTab } from "./layers";
import { TokensTab } from "./tokens";
import { UncertaintyTab } from "./uncertainty";
import { WhatIfTab } from "./whatif";

export function allTabs(): Tab[] {
  return [
    new TokensTab(),
    new AttentionTab(),
    new HeadsTab(),
    new LayersTab(),
    new ContributionsTab(),
    new ActivationsTab(),
    new ExpertsTab(),
    new EmbeddingTab(),
    new UncertaintyTab(),
    new AttributionTab(),
    new WhatIfTab(),
  ];
}
