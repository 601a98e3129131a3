/**
 * Preferences kept in localStorage, where the page may have none: the offline report shown
 * in a notebook runs in a sandboxed frame with no origin, where touching localStorage throws.
 * There the preference simply lasts as long as the page.
 */
export function stored(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function store(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    // no storage here: nothing to keep
  }
}
