// plotly.js-dist-min ships no types: it is plotly.js, whose types @types/plotly.js has.
declare module 'plotly.js-dist-min' {
  import * as Plotly from 'plotly.js';
  export = Plotly;
}
